//! `[search]`: what a capacity search raises and where it stops (the
//! search itself is [`crate::capacity`]). A leaf: the scenario holds it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The parameters a search may raise: those that set the offered load.
pub const PARAMETERS: [&str; 3] = ["messages.rate", "clients.rooms", "clients.clients_per_room"];

/// `[search]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// What each step raises: `messages.rate` (per sender),
    /// `clients.rooms` or `clients.clients_per_room`.
    pub parameter: String,
    /// The first step's value.
    pub start: f64,
    /// Each step's value over the one before while the steps hold.
    #[serde(default = "defaults::factor")]
    pub factor: f64,
    /// At most this many steps before narrowing in.
    #[serde(default = "defaults::steps")]
    pub steps: u32,
    /// Steps between the highest load that held and the lowest that broke.
    #[serde(default = "defaults::refine")]
    pub refine: u32,
    /// A step breaks when its p99 latency passes this.
    #[serde(with = "humantime_serde")]
    pub max_p99: Duration,
    /// A step breaks when it lost more messages than this.
    #[serde(default)]
    pub max_lost: u64,
}

mod defaults {
    pub fn factor() -> f64 {
        2.0
    }
    pub fn steps() -> u32 {
        8
    }
    pub fn refine() -> u32 {
        2
    }
}

impl Search {
    /// The field at fault and why, when the search cannot run.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !PARAMETERS.contains(&self.parameter.as_str()) {
            return Err((
                "search.parameter",
                format!(
                    "must be one of messages.rate, clients.rooms, clients.clients_per_room, got {:?}",
                    self.parameter
                ),
            ));
        }
        if !(self.start.is_finite() && self.start > 0.0) {
            return Err((
                "search.start",
                format!("must be a number above 0, got {}", self.start),
            ));
        }
        if !(self.factor.is_finite() && self.factor >= 1.1 && self.factor <= 100.0) {
            return Err((
                "search.factor",
                format!("must be between 1.1 and 100, got {}", self.factor),
            ));
        }
        if !(1..=30).contains(&self.steps) {
            return Err((
                "search.steps",
                format!("must be between 1 and 30, got {}", self.steps),
            ));
        }
        if self.refine > 10 {
            return Err((
                "search.refine",
                format!("must be at most 10, got {}", self.refine),
            ));
        }
        if self.max_p99.is_zero() {
            return Err(("search.max_p99", "must be above 0".into()));
        }
        Ok(())
    }

    /// True when the parameter takes whole numbers.
    pub fn integer(&self) -> bool {
        self.parameter.starts_with("clients.")
    }

    /// `v` as the parameter takes it: whole for a count, else 4 significant
    /// digits (so a step's folder and label read well).
    pub fn round(&self, v: f64) -> f64 {
        if self.integer() {
            v.round().max(1.0)
        } else {
            let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
            (v * scale).round() / scale
        }
    }
}

/// A search the tests share: the rate from 10 by ×2, 8 steps, 2
/// refinements, a p99 of at most 100 ms.
#[cfg(test)]
pub(crate) fn example() -> Search {
    Search {
        parameter: "messages.rate".into(),
        start: 10.0,
        factor: 2.0,
        steps: 8,
        refine: 2,
        max_p99: Duration::from_millis(100),
        max_lost: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> Search {
        example()
    }

    #[test]
    fn bad_searches_name_the_field() {
        let bad = |s: Search| s.check().unwrap_err().0;
        assert_eq!(
            bad(Search {
                parameter: "network.rtt".into(),
                ..search()
            }),
            "search.parameter"
        );
        assert_eq!(
            bad(Search {
                start: 0.0,
                ..search()
            }),
            "search.start"
        );
        assert_eq!(
            bad(Search {
                factor: 1.0,
                ..search()
            }),
            "search.factor"
        );
        assert_eq!(
            bad(Search {
                steps: 0,
                ..search()
            }),
            "search.steps"
        );
        assert_eq!(
            bad(Search {
                refine: 11,
                ..search()
            }),
            "search.refine"
        );
        assert_eq!(
            bad(Search {
                max_p99: Duration::ZERO,
                ..search()
            }),
            "search.max_p99"
        );
        assert!(search().check().is_ok());
    }

    #[test]
    fn values_round_to_what_the_parameter_takes() {
        assert_eq!(search().round(113.137), 113.1);
        assert_eq!(search().round(0.123456), 0.1235);
        let rooms = Search {
            parameter: "clients.rooms".into(),
            ..search()
        };
        assert_eq!(rooms.round(2.4), 2.0);
        assert_eq!(rooms.round(0.2), 1.0);
    }
}
