//! Integration tests: the real server on 127.0.0.1:0, real clients.

mod util;

mod attacks;
mod browser;
mod curl;
mod errors;
mod lifecycle;
mod long_poll;
mod protocols;
mod resume;
mod transports;
