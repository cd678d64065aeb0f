//! The views' configuration: the tick and the fraud rules (contract 3 and 5 `fraud_alerts`).
//!
//! Plain serde data, kept apart from the code that runs it. Every default is the contract's
//! value. A configuration is validated as it is read, whether through [`FraudConfig::from_toml_str`],
//! [`ViewsConfig::from_toml_str`] or serde (as a field of a larger config): unknown rules or
//! fields, a zero or negative window, a rule section without its `threshold` or a threshold out
//! of range is an error naming the field, e.g. `fraud.velocity.window_ms must be > 0`.
//!
//! In TOML (the contract's defaults):
//!
//! ```toml
//! tick_ms = 1000
//!
//! [fraud.velocity]   # distinct transaction_ids per user in the window > threshold
//! window_ms = 600000
//! threshold = 5
//!
//! [fraud.amount]     # net cents (all currencies added) per user in the window > threshold
//! window_ms = 3600000
//! threshold = 500000
//!
//! [fraud.geo]        # distinct non-missing countries per user in the window >= threshold
//! window_ms = 3600000
//! threshold = 2
//!
//! [fraud.risky_ip]   # greatest risk score of the session's IPs >= threshold (no window)
//! threshold = 0.8
//! ```
//!
//! A rule section may be left out (it keeps the contract's rule); a section that is present must
//! give its `threshold`, and may leave out `window_ms` (the contract's window).
//! [`FraudConfig::from_toml_str`] reads the content of the `[fraud]` table alone (sections
//! `[velocity]`, `[amount]`, `[geo]`, `[risky_ip]`); its messages still name fields by their
//! path in the full file (`fraud.velocity.window_ms`).

use serde::{Deserialize, Serialize};
use shopdiff_schemas::rows::Rule;
use shopdiff_schemas::tables::RISK_SCALE;
use shopdiff_schemas::time::{DAY_MS, HOUR_MS};

/// The trailing window of `inventory.units_7d`: 7 days (contract 5 `inventory`).
pub const INVENTORY_WINDOW_MS: u64 = 7 * DAY_MS as u64;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown rule or field, or a value of the wrong type (the message shows the
    /// line and the field).
    #[error("invalid views config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A rule section without its threshold.
    #[error("{field} is missing (every [fraud.<rule>] section must set its threshold)")]
    Missing { field: &'static str },
    /// A window or tick that is zero or negative.
    #[error("{field} must be > 0 (got {value})")]
    NotPositive { field: &'static str, value: i64 },
    /// A threshold outside its meaningful range.
    #[error("{field} must be {expected} (got {value})")]
    OutOfRange {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// A windowed fraud rule: a trailing window and an integer threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    /// The window length in milliseconds (> 0). At `as_of = T` the window holds the lines with
    /// `T - window_ms < ceil_tick(timestamp) <= T`.
    pub window_ms: u64,
    /// The threshold in the rule's unit ([`Rule::scale`]): a count of transactions (`velocity`),
    /// cents of all currencies (`amount`) or a count of countries (`geo`).
    pub threshold: i64,
}

/// The fraud rules (contract 5 `fraud_alerts`). Serialized as in the module's TOML, with the
/// `risky_ip` threshold as a decimal risk score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFraud", into = "RawFraud")]
pub struct FraudConfig {
    /// Alert when a user's distinct `transaction_id`s in the window are `> threshold`
    /// (contract: 10 minutes, 5; threshold >= 0).
    pub velocity: WindowRule,
    /// Alert when a user's net revenue in the window, cents of all currencies added, is
    /// `> threshold` (contract: 1 hour, 500000 cents; threshold >= 0).
    pub amount: WindowRule,
    /// Alert when a user's distinct non-missing `user_location.country`s in the window are
    /// `>= threshold` (contract: 1 hour, 2; threshold >= 1).
    pub geo: WindowRule,
    /// Alert when the greatest risk score of the IPs seen in the behavior events of a
    /// transaction's session is `>= risky_ip_threshold`, in millionths of a risk score
    /// ([`RISK_SCALE`]; an `is_tor` IP with a score counts as 1.0). No window. Contract: 0.8,
    /// that is `800_000`; threshold >= 0.
    pub risky_ip_threshold: i64,
}

impl Default for FraudConfig {
    fn default() -> Self {
        FraudConfig {
            velocity: WindowRule {
                window_ms: 10 * 60_000,
                threshold: 5,
            },
            amount: WindowRule {
                window_ms: HOUR_MS as u64,
                threshold: 500_000,
            },
            geo: WindowRule {
                window_ms: HOUR_MS as u64,
                threshold: 2,
            },
            risky_ip_threshold: 800_000,
        }
    }
}

impl FraudConfig {
    /// Reads the content of the `[fraud]` table (sections `[velocity]`, `[amount]`, `[geo]`,
    /// `[risky_ip]`); a section left out keeps the contract's rule.
    pub fn from_toml_str(text: &str) -> Result<FraudConfig, ConfigError> {
        let raw: RawFraud = toml::from_str(text)?;
        FraudConfig::try_from(raw)
    }

    /// The threshold of a rule, in the rule's [`Rule::scale`].
    pub fn threshold(&self, rule: Rule) -> i64 {
        match rule {
            Rule::Velocity => self.velocity.threshold,
            Rule::Amount => self.amount.threshold,
            Rule::Geo => self.geo.threshold,
            Rule::RiskyIp => self.risky_ip_threshold,
        }
    }

    /// The window of a rule in milliseconds; `None` for `risky_ip`, which has none.
    pub fn window_ms(&self, rule: Rule) -> Option<u64> {
        match rule {
            Rule::Velocity => Some(self.velocity.window_ms),
            Rule::Amount => Some(self.amount.window_ms),
            Rule::Geo => Some(self.geo.window_ms),
            Rule::RiskyIp => None,
        }
    }
}

/// Everything the views need to know besides their inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawViews", into = "RawViews")]
pub struct ViewsConfig {
    /// The logical-time tick in milliseconds (> 0): a record with event time `e` takes effect
    /// at `ceil_tick(e)`. Contract default: 1000 (1 s).
    pub tick_ms: u64,
    /// The fraud rules.
    pub fraud: FraudConfig,
    /// The ingest's lateness horizon in milliseconds, when it has one (contract 3): no record
    /// older than `watermark - horizon` reaches the views, so the per-day state of days wholly
    /// below it (funnel sessions, product days) is retired. `None` (the default, for callers
    /// that feed the dataflow without an ingest) keeps every state.
    pub horizon_ms: Option<u64>,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            tick_ms: 1000,
            fraud: FraudConfig::default(),
            horizon_ms: None,
        }
    }
}

impl ViewsConfig {
    /// When the per-day state of a view can be retired: once the frontier is past the day's
    /// end by the horizon and a tick (see [`ViewsConfig::horizon_ms`]).
    pub fn retire_days<K: DayKey>(&self) -> Option<shopdiff_operators::keyed::Retire<K>> {
        self.horizon_ms.map(|h| shopdiff_operators::keyed::Retire {
            below: h + self.tick_ms,
            last: |k: &K| (k.day() + shopdiff_schemas::time::DAY_MS).max(0) as u64,
        })
    }

    /// Reads `tick_ms` and the `[fraud.<rule>]` sections; anything left out keeps its default.
    pub fn from_toml_str(text: &str) -> Result<ViewsConfig, ConfigError> {
        let raw: RawViews = toml::from_str(text)?;
        ViewsConfig::try_from(raw)
    }
}

// ------------------------------------------------------------------ the TOML shape, unvalidated

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowRule {
    window_ms: Option<i64>,
    threshold: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRiskRule {
    /// A decimal risk score (`0.8`); an integer is accepted too (`1`).
    threshold: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFraud {
    velocity: Option<RawWindowRule>,
    amount: Option<RawWindowRule>,
    geo: Option<RawWindowRule>,
    risky_ip: Option<RawRiskRule>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawViews {
    tick_ms: Option<i64>,
    fraud: Option<RawFraud>,
}

/// The field names of one windowed rule, for messages.
struct Names {
    window: &'static str,
    threshold: &'static str,
    /// The threshold's range, as the message shows it.
    expected: &'static str,
}

fn window_rule(
    raw: Option<RawWindowRule>,
    default: WindowRule,
    min_threshold: i64,
    names: Names,
) -> Result<WindowRule, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let threshold = raw.threshold.ok_or(ConfigError::Missing {
        field: names.threshold,
    })?;
    if threshold < min_threshold {
        return Err(ConfigError::OutOfRange {
            field: names.threshold,
            expected: names.expected,
            value: threshold.to_string(),
        });
    }
    let window_ms = match raw.window_ms {
        None => default.window_ms,
        Some(w) if w <= 0 => {
            return Err(ConfigError::NotPositive {
                field: names.window,
                value: w,
            })
        }
        Some(w) => w as u64,
    };
    Ok(WindowRule {
        window_ms,
        threshold,
    })
}

/// The largest `risky_ip` threshold accepted (in risk units), far above any risk score.
const MAX_RISK_THRESHOLD: f64 = 1e9;

impl TryFrom<RawFraud> for FraudConfig {
    type Error = ConfigError;

    fn try_from(raw: RawFraud) -> Result<Self, ConfigError> {
        let d = FraudConfig::default();
        let velocity = window_rule(
            raw.velocity,
            d.velocity,
            0,
            Names {
                window: "fraud.velocity.window_ms",
                threshold: "fraud.velocity.threshold",
                expected: ">= 0",
            },
        )?;
        let amount = window_rule(
            raw.amount,
            d.amount,
            0,
            Names {
                window: "fraud.amount.window_ms",
                threshold: "fraud.amount.threshold",
                expected: ">= 0",
            },
        )?;
        let geo = window_rule(
            raw.geo,
            d.geo,
            1,
            Names {
                window: "fraud.geo.window_ms",
                threshold: "fraud.geo.threshold",
                expected: ">= 1",
            },
        )?;
        let risky_ip_threshold = match raw.risky_ip {
            None => d.risky_ip_threshold,
            Some(r) => {
                let field = "fraud.risky_ip.threshold";
                let t = r.threshold.ok_or(ConfigError::Missing { field })?;
                // NaN is in no range
                if !(0.0..=MAX_RISK_THRESHOLD).contains(&t) {
                    return Err(ConfigError::OutOfRange {
                        field,
                        expected: "a risk score >= 0 and <= 1e9",
                        value: t.to_string(),
                    });
                }
                (t * RISK_SCALE as f64).round() as i64
            }
        };
        Ok(FraudConfig {
            velocity,
            amount,
            geo,
            risky_ip_threshold,
        })
    }
}

impl From<FraudConfig> for RawFraud {
    fn from(c: FraudConfig) -> Self {
        let w = |r: WindowRule| RawWindowRule {
            window_ms: Some(r.window_ms as i64),
            threshold: Some(r.threshold),
        };
        RawFraud {
            velocity: Some(w(c.velocity)),
            amount: Some(w(c.amount)),
            geo: Some(w(c.geo)),
            risky_ip: Some(RawRiskRule {
                threshold: Some(c.risky_ip_threshold as f64 / RISK_SCALE as f64),
            }),
        }
    }
}

impl TryFrom<RawViews> for ViewsConfig {
    type Error = ConfigError;

    fn try_from(raw: RawViews) -> Result<Self, ConfigError> {
        let tick_ms = match raw.tick_ms {
            None => ViewsConfig::default().tick_ms,
            Some(t) if t <= 0 => {
                return Err(ConfigError::NotPositive {
                    field: "tick_ms",
                    value: t,
                })
            }
            Some(t) => t as u64,
        };
        let fraud = match raw.fraud {
            None => FraudConfig::default(),
            Some(f) => FraudConfig::try_from(f)?,
        };
        Ok(ViewsConfig {
            tick_ms,
            fraud,
            horizon_ms: None,
        })
    }
}

impl From<ViewsConfig> for RawViews {
    fn from(c: ViewsConfig) -> Self {
        RawViews {
            tick_ms: Some(c.tick_ms as i64),
            fraud: Some(c.fraud.into()),
        }
    }
}

/// A key that holds a UTC day's start (ms): its records' event times are within that day.
pub trait DayKey {
    fn day(&self) -> shopdiff_schemas::time::Ms;
}

impl<A> DayKey for (A, shopdiff_schemas::time::Ms) {
    fn day(&self) -> shopdiff_schemas::time::Ms {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        FraudConfig::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_contract() {
        let d = FraudConfig::default();
        assert_eq!((d.velocity.window_ms, d.velocity.threshold), (600_000, 5));
        assert_eq!(
            (d.amount.window_ms, d.amount.threshold),
            (3_600_000, 500_000)
        );
        assert_eq!((d.geo.window_ms, d.geo.threshold), (3_600_000, 2));
        assert_eq!(d.risky_ip_threshold, 800_000);
        assert_eq!(d.threshold(Rule::RiskyIp), 800_000);
        assert_eq!(d.window_ms(Rule::RiskyIp), None);
        assert_eq!(d.window_ms(Rule::Velocity), Some(600_000));
        assert_eq!(FraudConfig::from_toml_str("").unwrap(), d);
        assert_eq!(
            ViewsConfig::from_toml_str("").unwrap(),
            ViewsConfig::default()
        );
        assert_eq!(ViewsConfig::default().tick_ms, 1000);
    }

    #[test]
    fn reads_every_rule() {
        let c = FraudConfig::from_toml_str(
            "[velocity]\nwindow_ms = 60000\nthreshold = 3\n\
             [amount]\nthreshold = 100\n\
             [geo]\nwindow_ms = 1000\nthreshold = 1\n\
             [risky_ip]\nthreshold = 0.75\n",
        )
        .unwrap();
        assert_eq!(
            c.velocity,
            WindowRule {
                window_ms: 60_000,
                threshold: 3
            }
        );
        // a section without window_ms keeps the contract's window
        assert_eq!(
            c.amount,
            WindowRule {
                window_ms: 3_600_000,
                threshold: 100
            }
        );
        assert_eq!(
            c.geo,
            WindowRule {
                window_ms: 1000,
                threshold: 1
            }
        );
        assert_eq!(c.risky_ip_threshold, 750_000);
        // an integer risk threshold, and the nearest millionth of a decimal one
        let c = FraudConfig::from_toml_str("[risky_ip]\nthreshold = 1\n").unwrap();
        assert_eq!(c.risky_ip_threshold, 1_000_000);
        let c = FraudConfig::from_toml_str("[risky_ip]\nthreshold = 0.8\n").unwrap();
        assert_eq!(c.risky_ip_threshold, 800_000);
    }

    #[test]
    fn views_config_and_round_trip() {
        let v = ViewsConfig::from_toml_str(
            "tick_ms = 500\n[fraud.geo]\nthreshold = 3\n[fraud.risky_ip]\nthreshold = 0.9\n",
        )
        .unwrap();
        assert_eq!(v.tick_ms, 500);
        assert_eq!(
            v.fraud.geo,
            WindowRule {
                window_ms: 3_600_000,
                threshold: 3
            }
        );
        assert_eq!(v.fraud.risky_ip_threshold, 900_000);
        assert_eq!(v.fraud.velocity, FraudConfig::default().velocity);
        let text = toml::to_string(&v).unwrap();
        assert_eq!(ViewsConfig::from_toml_str(&text).unwrap(), v);
        // validation also runs when the config is a serde field of a larger one
        let e = toml::from_str::<ViewsConfig>("[fraud.velocity]\nwindow_ms = 0\nthreshold = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fraud.velocity.window_ms must be > 0"), "{e}");
    }

    #[test]
    fn rejects_unknown_rules_and_fields() {
        let e = err("[speed]\nthreshold = 5\n");
        assert!(e.contains("unknown field `speed`"), "{e}");
        let e = err("[velocity]\nthreshold = 5\nwindow = 10\n");
        assert!(e.contains("unknown field `window`"), "{e}");
        let e = err("[risky_ip]\nthreshold = 0.8\nwindow_ms = 10\n");
        assert!(e.contains("unknown field `window_ms`"), "{e}");
        let e = ViewsConfig::from_toml_str("tick = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `tick`"), "{e}");
        let e = ViewsConfig::from_toml_str("[fraud.vel]\nthreshold = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `vel`"), "{e}");
        let e = err("[velocity]\nthreshold = 5.5\n");
        assert!(e.starts_with("invalid views config"), "{e}");
        assert!(matches!(
            FraudConfig::from_toml_str("not toml ["),
            Err(ConfigError::Toml(_))
        ));
    }

    #[test]
    fn rejects_zero_and_negative_windows() {
        for (rule, w) in [("velocity", 0), ("amount", -1), ("geo", -3_600_000)] {
            let e = err(&format!("[{rule}]\nwindow_ms = {w}\nthreshold = 5\n"));
            assert_eq!(e, format!("fraud.{rule}.window_ms must be > 0 (got {w})"));
        }
        let e = ViewsConfig::from_toml_str("tick_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "tick_ms must be > 0 (got 0)");
        let e = ViewsConfig::from_toml_str("tick_ms = -1000\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "tick_ms must be > 0 (got -1000)");
    }

    #[test]
    fn rejects_missing_thresholds() {
        for rule in ["velocity", "amount", "geo"] {
            let e = err(&format!("[{rule}]\nwindow_ms = 1000\n"));
            assert!(
                e.starts_with(&format!("fraud.{rule}.threshold is missing")),
                "{e}"
            );
        }
        let e = err("[risky_ip]\n");
        assert!(e.starts_with("fraud.risky_ip.threshold is missing"), "{e}");
    }

    #[test]
    fn rejects_thresholds_out_of_range() {
        assert_eq!(
            err("[velocity]\nthreshold = -1\n"),
            "fraud.velocity.threshold must be >= 0 (got -1)"
        );
        assert_eq!(
            err("[amount]\nthreshold = -100\n"),
            "fraud.amount.threshold must be >= 0 (got -100)"
        );
        assert_eq!(
            err("[geo]\nthreshold = 0\n"),
            "fraud.geo.threshold must be >= 1 (got 0)"
        );
        let e = err("[risky_ip]\nthreshold = -0.1\n");
        assert!(e.starts_with("fraud.risky_ip.threshold must be"), "{e}");
        let e = err("[risky_ip]\nthreshold = nan\n");
        assert!(e.starts_with("fraud.risky_ip.threshold must be"), "{e}");
        assert!(FraudConfig::from_toml_str("[velocity]\nthreshold = 0\n").is_ok());
    }
}
