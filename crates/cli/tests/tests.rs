//! Integration tests of the load generator and the `chatbench` binary, each
//! against a real server on 127.0.0.1:0.

mod util;

mod accounting;
mod advise;
mod capacity;
mod commands;
mod docs;
mod end_to_end;
mod failures;
mod layout;
mod netns;
mod network;
mod packet_link;
mod protocols;
mod proxies;
mod shards;
mod stacks;
mod workers;
