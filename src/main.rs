//! The `mxisd` command: run the server, or check a configuration.

use mxisd::{api, app::App, config, http, jobs, logging};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
Usage: mxisd [-c FILE] [-v|-vv]         run the identity server
       mxisd check-config [-c FILE]     validate the configuration and exit (0 = valid)
       mxisd --version

The configuration is FILE, else /etc/mxisd/mxisd.yaml, else ./mxisd.yaml.
-v logs debug messages, -vv also those of the libraries.";

struct Args {
    check_only: bool,
    config: Option<PathBuf>,
    verbosity: u8,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        check_only: false,
        config: None,
        verbosity: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "check-config" => args.check_only = true,
            "-c" | "--config" => {
                args.config = Some(it.next().ok_or("-c needs a file name")?.into());
            }
            "-v" => args.verbosity = args.verbosity.max(1),
            "-vv" => args.verbosity = 2,
            "-V" | "--version" => {
                println!("mxisd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let code = run_command();
    logging::flush();
    code
}

fn run_command() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxisd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    logging::init(log::LevelFilter::Info, log::LevelFilter::Warn);
    let loaded = match config::find_file(args.config.as_deref())
        .and_then(|p| config::load_file(&p).map(|l| (p, l)))
    {
        Ok(loaded) => loaded,
        Err(e) => {
            log::error!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (path, loaded) = loaded;
    for warning in &loaded.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    if args.check_only {
        println!("{}: valid", path.display());
        return ExitCode::SUCCESS;
    }
    let config = loaded.config;
    match args.verbosity {
        0 => logging::set_levels(config.logging.app, config.logging.root),
        1 => logging::set_levels(log::LevelFilter::Debug, config.logging.root),
        _ => logging::set_levels(log::LevelFilter::Trace, log::LevelFilter::Debug),
    }
    run(config)
}

/// The job that builds the hash index of v2 hashed lookups, unless `hashing.enabled` is
/// false (v2 lookups then take only the `none` algorithm, and no index is kept). The index
/// is first built at once, on the job's thread, with the listener already up: a store that
/// hangs cannot hold up the start (hashed lookups are 503 until it is ready).
fn hash_index_refresh(app: &Arc<App>) -> std::io::Result<Option<jobs::Job>> {
    if !app.config.hashing.enabled {
        log::info!(
            "hashing.enabled is false: no hash index; v2 lookups take only the none algorithm"
        );
        return Ok(None);
    }
    let app = app.clone();
    let interval = app.config.hashing.refresh_interval;
    jobs::every("hash-refresh", interval, move || {
        app.hash_index.refresh(&app.lookup)
    })
    .map(Some)
}

/// Forgets expired validation sessions, every minute (safe on every instance at once).
fn session_sweep(app: &Arc<App>) -> std::io::Result<jobs::Job> {
    let app = app.clone();
    jobs::every(
        "session-sweep",
        std::time::Duration::from_secs(60),
        move || app.sessions.sweep(&app.state),
    )
}

/// Follows the change feed for binds made by other instances (every 500 ms: they count
/// within a second), when binds are kept here.
fn binds_feed(app: &Arc<App>) -> std::io::Result<Option<jobs::Job>> {
    if !app.config.binds.local {
        return Ok(None);
    }
    let app = app.clone();
    let mut follower = mxisd::binds::Follower::default();
    jobs::every(
        "binds-feed",
        std::time::Duration::from_millis(500),
        move || follower.poll(&app.state, &app.hash_index),
    )
    .map(Some)
}

fn run(config: config::Config) -> ExitCode {
    let signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let router = api::router(&config);
    let app = match App::open(config) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before the listener: the first requests' deliveries wake them.
    let features = match app.start_features() {
        Ok(features) => features,
        Err(e) => {
            log::error!("cannot start {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match http::Server::start(&app.config, app.clone(), router) {
        Ok(server) => server,
        Err(e) => {
            let s = &app.config.server;
            log::error!(
                "cannot listen on {}:{} (server.bindAddress, server.port): {e}",
                s.bind_address,
                s.port
            );
            return ExitCode::FAILURE;
        }
    };
    let refresher = match hash_index_refresh(&app) {
        Ok(job) => job,
        Err(e) => {
            log::error!("cannot start the hash index refresh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sweeper = match session_sweep(&app) {
        Ok(job) => job,
        Err(e) => {
            log::error!("cannot start the session sweep: {e}");
            return ExitCode::FAILURE;
        }
    };
    let feed = match binds_feed(&app) {
        Ok(job) => job,
        Err(e) => {
            log::error!("cannot start following the change feed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if app.config.server.public_url_guessed {
        // Mails (validation links, invites) and invite keys carry this URL: a wrong guess
        // breaks them for every user, quietly.
        log::warn!(
            "server.publicUrl is not set: links in mails and invite key URLs use {}; set it to the URL clients reach mxisd at",
            app.config.server.public_url
        );
    }
    let key = app.keys.current();
    log::info!(
        "mxisd {} listening on http://{} for {} as {} (public URL {}), signing with {} {}",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        app.config.matrix.domain,
        app.config.server.name,
        app.config.server.public_url,
        key.id,
        key.public_key()
    );
    let mut signals = signals;
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal} received: finishing requests in flight, then stopping");
    }
    let failed = server.failed();
    server.shutdown();
    features.stop();
    if let Some(job) = refresher {
        job.stop();
    }
    sweeper.stop();
    if let Some(job) = feed {
        job.stop();
    }
    log::info!("stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
