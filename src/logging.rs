//! The process logger: one line per event on standard error (journald adds its own metadata
//! under systemd), with a UTC timestamp, the level and where it comes from.
//!
//! Two levels, as ma1sd's `logging.root` / `logging.app`: one for mxisd's own modules, one for
//! the libraries (tiny_http, rusqlite, ...). Nothing here ever formats request bodies.

use log::{LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines waiting for the writer thread at most; beyond, loggers wait (stderr is slow).
const QUEUE: usize = 16 * 1024;

/// Lines go to a writer thread that writes them in batches: one `write(2)` per request would
/// cost more than the request.
struct Writer {
    queue: SyncSender<Option<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static WRITER: OnceLock<Writer> = OnceLock::new();
/// Set once the writer thread is gone (stopped by `flush`, or never started).
static DIRECT: AtomicBool = AtomicBool::new(false);

fn writer() -> &'static Writer {
    WRITER.get_or_init(|| {
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || write_lines(lines))
            .ok();
        if thread.is_none() {
            DIRECT.store(true, Ordering::SeqCst);
        }
        Writer {
            queue,
            thread: Mutex::new(thread),
        }
    })
}

/// How long the writer sleeps between batches: senders never wake it (a wake-up per line
/// costs as much as the request it logs), so a line reaches stderr within this delay.
const TICK: std::time::Duration = std::time::Duration::from_millis(10);

fn write_lines(lines: Receiver<Option<String>>) {
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stderr());
    loop {
        loop {
            match lines.try_recv() {
                Ok(Some(line)) => {
                    let _ = out.write_all(line.as_bytes());
                }
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let _ = out.flush();
        std::thread::sleep(TICK);
    }
}

/// Writes out every line logged so far and stops the writer; call before the process ends.
pub fn flush() {
    if let Some(w) = WRITER.get() {
        DIRECT.store(true, Ordering::SeqCst);
        let _ = w.queue.send(None);
        if let Some(thread) = crate::lock(&w.thread).take() {
            let _ = thread.join();
        }
    }
}

fn emit(line: String) {
    let w = writer();
    if DIRECT.load(Ordering::Relaxed) {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        return;
    }
    match w.queue.try_send(Some(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(line)) => {
            let _ = w.queue.send(line);
        }
        Err(TrySendError::Disconnected(Some(line))) => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Err(TrySendError::Disconnected(None)) => {}
    }
}

static APP_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
static ROOT_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Warn as usize);

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

fn level_from(n: usize) -> LevelFilter {
    [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ]
    .get(n)
    .copied()
    .unwrap_or(LevelFilter::Trace)
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let limit = if metadata.target().starts_with("mxisd") {
            &APP_LEVEL
        } else {
            &ROOT_LEVEL
        };
        metadata.level() <= level_from(limit.load(Ordering::Relaxed))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // One allocation per line, sized for an access-log line.
        let mut line = String::with_capacity(128);
        write_timestamp(&mut line, SystemTime::now());
        let _ = writeln!(
            line,
            " {:<5} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
        emit(line);
    }

    fn flush(&self) {}
}

/// Installs the logger (once) and sets both levels.
pub fn init(app: LevelFilter, root: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    set_levels(app, root);
}

pub fn set_levels(app: LevelFilter, root: LevelFilter) {
    APP_LEVEL.store(app as usize, Ordering::Relaxed);
    ROOT_LEVEL.store(root as usize, Ordering::Relaxed);
    log::set_max_level(app.max(root));
}

/// mxisd's own level for `-v` given `verbosity` times (`-vv` is 2): 0 keeps `logging.app`;
/// `-v` at least debug, which shows each lookup step (store, filter or query with its
/// values escaped, time, result); `-vv` trace, which adds each outbound call (method,
/// URL without its query, status, time).
pub fn app_level(verbosity: u8, configured: LevelFilter) -> LevelFilter {
    match verbosity {
        0 => configured,
        1 => configured.max(LevelFilter::Debug),
        _ => LevelFilter::Trace,
    }
}

/// The libraries' level: `logging.root`, and at least debug with `-vv`.
pub fn root_level(verbosity: u8, configured: LevelFilter) -> LevelFilter {
    match verbosity {
        0 | 1 => configured,
        _ => configured.max(LevelFilter::Debug),
    }
}

/// Appends `now` as `2026-11-23T19:41:07.123Z`.
fn write_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A warning that can come in bursts (one per refused request): written at most once per
/// `every`, each line saying how many events it stands for, so that a burst of thousands
/// is a few lines, not thousands. Events after the last line are counted in the next one.
pub struct Throttled {
    every: std::time::Duration,
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttled {
    pub const fn new(every: std::time::Duration) -> Throttled {
        Throttled {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event at `now`: `Some(n)` if a line is due, `n` the events since the
    /// last line (this one included); else None (counted for the next line).
    pub fn hit(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = crate::lock(&self.state);
        let (last, since) = &mut *state;
        *since += 1;
        if last.is_some_and(|l| now.saturating_duration_since(l) < self.every) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_throttled_warning_is_one_line_per_period_counting_the_others() {
        use std::time::Instant;
        let t = Throttled::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.hit(start), Some(1));
        for ms in [1, 500, 9_999] {
            assert_eq!(t.hit(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.hit(start + Duration::from_secs(10)), Some(4));
        assert_eq!(t.hit(start + Duration::from_secs(15)), None);
        assert_eq!(t.hit(start + Duration::from_secs(60)), Some(2));
    }

    fn utc_timestamp(now: SystemTime) -> String {
        let mut out = String::new();
        write_timestamp(&mut out, now);
        out
    }

    #[test]
    fn each_v_adds_a_level_never_removes_one() {
        use LevelFilter::*;
        assert_eq!(app_level(0, Info), Info);
        assert_eq!(app_level(1, Info), Debug);
        assert_eq!(app_level(1, Trace), Trace);
        assert_eq!(app_level(2, Warn), Trace);
        assert_eq!(root_level(1, Warn), Warn);
        assert_eq!(root_level(2, Warn), Debug);
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(utc_timestamp(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&utc_timestamp(leap)[..10], "2000-02-29");
    }
}
