//! Typed job parameters: what a job declares ([`ParamSpec`]) and the
//! checked values it is built with ([`JobParams`]).
//!
//! Every value is checked against its kind before the job is built, in
//! the process that receives the submission, so a malformed value is a
//! one-line error naming the parameter and never a failure on a worker.

use crate::error::JobError;
use std::collections::BTreeMap;
use std::time::Duration;

/// The type of a job parameter, checked before the job is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A non-negative integer (`_` separators allowed: `1_000_000`).
    UInt,
    /// Free text.
    Text,
    /// A path to an existing file.
    File,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A duration with a unit: `250ms`, `1.5s`, `2m`, `1h` (`0` is zero).
    Duration,
    /// A comma-separated list of non-empty items (`a,b,c`); spaces around
    /// items are dropped.
    List,
    /// An absolute URL with a scheme (`kafka://host:9092`, `s3://bucket/p`).
    Url,
}

impl ParamKind {
    fn expected(&self) -> String {
        match self {
            ParamKind::UInt => "a non-negative integer".into(),
            ParamKind::Text => "text".into(),
            ParamKind::File => "the path of an existing file".into(),
            ParamKind::Choice(words) => format!("one of {}", words.join(", ")),
            ParamKind::Duration => "a duration with a unit (ms, s, m or h)".into(),
            ParamKind::List => "a comma-separated list of non-empty items".into(),
            ParamKind::Url => "an absolute URL (scheme://…)".into(),
        }
    }

    /// Why `value` is not of this kind, if it is not.
    fn problem(&self, value: &str) -> Option<String> {
        let ok = match self {
            ParamKind::UInt => parse_uint(value).is_some(),
            ParamKind::Text => true,
            ParamKind::File => std::path::Path::new(value).is_file(),
            ParamKind::Choice(words) => words.contains(&value),
            ParamKind::Duration => return parse_duration(value).err(),
            ParamKind::List => parse_list(value).is_some(),
            ParamKind::Url => return url::Url::parse(value).err().map(|e| e.to_string()),
        };
        (!ok).then(String::new)
    }
}

fn parse_uint(value: &str) -> Option<u64> {
    let digits: String = value.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_list(value: &str) -> Option<Vec<String>> {
    let items: Vec<String> = value.split(',').map(|s| s.trim().to_owned()).collect();
    items.iter().all(|s| !s.is_empty()).then_some(items)
}

/// Parses a duration: `0`, `off`, `250ms`, `1s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" || text == "off" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// One parameter of a job.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Its name, as in `--param name=value`.
    pub name: &'static str,
    /// Its type.
    pub kind: ParamKind,
    /// The value when not given; `None` makes it required.
    pub default: Option<&'static str>,
    /// What it is for.
    pub help: &'static str,
}

/// A job's parameters, checked against its [`ParamSpec`]s, defaults filled in.
#[derive(Debug, Clone)]
pub struct JobParams {
    values: BTreeMap<&'static str, String>,
}

impl JobParams {
    /// Checks `given` (name, value) pairs against `specs`.
    pub fn parse(
        job: &str,
        specs: &[ParamSpec],
        given: &[(String, String)],
    ) -> Result<Self, JobError> {
        let mut values = BTreeMap::new();
        for (name, value) in given {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                return Err(JobError::UnknownParam {
                    job: job.into(),
                    param: name.clone(),
                    expected: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                });
            };
            if let Some(problem) = spec.kind.problem(value) {
                return Err(JobError::MalformedParam {
                    job: job.into(),
                    param: name.clone(),
                    value: value.clone(),
                    expected: spec.kind.expected(),
                    problem,
                });
            }
            values.insert(spec.name, value.clone());
        }
        for spec in specs {
            if values.contains_key(spec.name) {
                continue;
            }
            match spec.default {
                Some(default) => {
                    values.insert(spec.name, default.to_owned());
                }
                None => {
                    return Err(JobError::MissingParam {
                        job: job.into(),
                        param: spec.name.into(),
                        help: spec.help.into(),
                    })
                }
            }
        }
        Ok(Self { values })
    }

    /// Splits `key=value` arguments into pairs.
    pub fn split_pairs(arguments: &[String]) -> Result<Vec<(String, String)>, JobError> {
        arguments
            .iter()
            .map(|arg| match arg.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
                _ => Err(JobError::NotKeyValue {
                    argument: arg.clone(),
                }),
            })
            .collect()
    }

    /// An integer parameter (validated by [`parse`](Self::parse); 0 if absent).
    pub fn uint(&self, name: &str) -> u64 {
        self.values
            .get(name)
            .and_then(|v| parse_uint(v))
            .unwrap_or(0)
    }

    /// A text, file, choice or URL parameter ("" if absent).
    pub fn text(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// A duration parameter (zero if absent).
    pub fn duration(&self, name: &str) -> Duration {
        self.values
            .get(name)
            .and_then(|v| parse_duration(v).ok())
            .unwrap_or(Duration::ZERO)
    }

    /// A list parameter's items (empty if absent).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values
            .get(name)
            .and_then(|v| parse_list(v))
            .unwrap_or_default()
    }

    /// A URL parameter, parsed (validated by [`parse`](Self::parse);
    /// `None` if absent).
    pub fn url(&self, name: &str) -> Option<url::Url> {
        self.values.get(name).and_then(|v| url::Url::parse(v).ok())
    }

    /// Every parameter with its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "events",
            kind: ParamKind::UInt,
            default: Some("10"),
            help: "how many",
        },
        ParamSpec {
            name: "emit",
            kind: ParamKind::Choice(&["final", "updates"]),
            default: Some("final"),
            help: "when",
        },
        ParamSpec {
            name: "gap",
            kind: ParamKind::Duration,
            default: Some("1s"),
            help: "session gap",
        },
        ParamSpec {
            name: "topics",
            kind: ParamKind::List,
            default: Some("a, b"),
            help: "topics",
        },
        ParamSpec {
            name: "broker",
            kind: ParamKind::Url,
            default: None,
            help: "where the broker is",
        },
    ];

    fn pairs(args: &[&str]) -> Vec<(String, String)> {
        JobParams::split_pairs(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn parse(args: &[&str]) -> Result<JobParams, JobError> {
        JobParams::parse("j", SPECS, &pairs(args))
    }

    #[test]
    fn every_kind_parses_and_defaults_fill_in() {
        let params = parse(&["events=1_000", "broker=kafka://127.0.0.1:9092"]).unwrap();
        assert_eq!(params.uint("events"), 1000);
        assert_eq!(params.text("emit"), "final");
        assert_eq!(params.duration("gap"), Duration::from_secs(1));
        assert_eq!(params.list("topics"), vec!["a", "b"]);
        let url = params.url("broker").unwrap();
        assert_eq!((url.scheme(), url.port()), ("kafka", Some(9092)));
        let params = parse(&["gap=250ms", "topics=x", "broker=s3://b/p"]).unwrap();
        assert_eq!(params.duration("gap"), Duration::from_millis(250));
        assert_eq!(params.list("topics"), vec!["x"]);
    }

    #[test]
    fn malformed_unknown_and_missing_parameters_are_named() {
        let err = parse(&["events=12x", "broker=a://b"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter 'events' of job 'j' must be a non-negative integer, got '12x'"
        );
        let err = parse(&["gap=5", "broker=a://b"]).unwrap_err();
        assert!(err.to_string().contains("needs a unit"), "{err}");
        let err = parse(&["topics=a,,b", "broker=a://b"]).unwrap_err();
        assert!(err.to_string().contains("comma-separated"), "{err}");
        let err = parse(&["broker=localhost"]).unwrap_err();
        assert!(err.to_string().contains("absolute URL"), "{err}");
        let err = parse(&["emit=sometimes", "broker=a://b"]).unwrap_err();
        assert!(err.to_string().contains("one of final, updates"), "{err}");
        let err = parse(&[]).unwrap_err();
        assert!(matches!(err, JobError::MissingParam { .. }), "{err}");
        let err = parse(&["event=5"]).unwrap_err();
        assert!(matches!(err, JobError::UnknownParam { .. }), "{err}");
        assert!(JobParams::split_pairs(&["novalue".into()]).is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    }
}
