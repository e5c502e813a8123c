//! `logging`: log levels (ma1sd's keys).

use super::check::Resolver;
use log::LevelFilter;

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub app: LevelFilter,
    pub root: LevelFilter,
}

impl Resolver<'_> {
    pub(super) fn logging(&mut self, l: raw::Logging) -> Result<LoggingConfig, String> {
        if l.requests == Some(true) {
            self.warnings.push(
                "`logging.requests` is recognised (ma1sd), not supported: request bodies carry tokens and addresses and are never logged".into(),
            );
        }
        let level = |path: &str, value: Option<String>, default: LevelFilter| match value {
            None => Ok(default),
            Some(v) => v.trim().parse::<LevelFilter>().map_err(|_| {
                self.at(
                    path,
                    format!("'{v}' is not a level (error, warn, info, debug, trace, off)"),
                )
            }),
        };
        Ok(LoggingConfig {
            app: level("logging.app", l.app, LevelFilter::Info)?,
            root: level("logging.root", l.root, LevelFilter::Warn)?,
        })
    }
}

/// `logging` as written.
pub(super) mod raw {
    use crate::config::yaml::section;

    section! {
        /// ma1sd's logging levels.
        Logging {
            root: String = "root",
            app: String = "app",
            requests: bool = "requests",
        }
    }
}
