//! The `mxisd` command: run the server, check a configuration (and its backends), or run
//! one lookup showing each step.

use mxisd::{api, app::App, cli, config, http, jobs, logging};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
Usage: mxisd [-c FILE] [-v|-vv]         run the identity server
       mxisd check-config [--connect] [-c FILE]
                                        validate the configuration and exit (0 = valid);
                                        --connect: also try every configured backend
       mxisd lookup [-c FILE] [-v] MEDIUM ADDRESS
                                        run the lookup chain once, logging each step
       mxisd --version

The configuration is FILE, else /etc/mxisd/mxisd.yaml, else ./mxisd.yaml.
-v logs each lookup step (store, filter or query, time, result); -vv also each outbound
call (method, URL, status, time) and the libraries' debug messages.";

#[derive(PartialEq, Eq)]
enum Command {
    Run,
    Check { connect: bool },
    Lookup { medium: String, address: String },
}

struct Args {
    command: Command,
    config: Option<PathBuf>,
    verbosity: u8,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        command: Command::Run,
        config: None,
        verbosity: 0,
    };
    let mut lookup = None;
    let mut connect = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "check-config" if args.command == Command::Run && lookup.is_none() => {
                args.command = Command::Check { connect: false }
            }
            "--connect" => connect = true,
            "lookup" if args.command == Command::Run && lookup.is_none() => {
                lookup = Some(Vec::new())
            }
            word if !word.starts_with('-') && lookup.as_ref().is_some_and(|l| l.len() < 2) => {
                if let Some(l) = lookup.as_mut() {
                    l.push(word.to_owned());
                }
            }
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
    if connect {
        match args.command {
            Command::Check { .. } => args.command = Command::Check { connect: true },
            _ => return Err("--connect goes with check-config".into()),
        }
    }
    if let Some(words) = lookup {
        let [medium, address] = <[String; 2]>::try_from(words).map_err(|_| {
            "lookup needs a medium and an address: mxisd lookup email alice@example.org"
        })?;
        args.command = Command::Lookup { medium, address };
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
    let config = loaded.config;
    match args.command {
        Command::Check { connect } => check_config(&path, &config, connect),
        Command::Lookup { medium, address } => {
            // The steps are debug lines; -v adds the outbound calls.
            let outbound = args.verbosity >= 1;
            logging::set_levels(
                if outbound {
                    log::LevelFilter::Trace
                } else {
                    log::LevelFilter::Debug
                },
                config.logging.root,
            );
            lookup(&config, &medium, &address)
        }
        Command::Run => {
            logging::set_levels(
                logging::app_level(args.verbosity, config.logging.app),
                logging::root_level(args.verbosity, config.logging.root),
            );
            run(config)
        }
    }
}

/// `check-config`: the configuration parsed (done by now), the service user's rights on
/// its files, and with `connect` every backend; 0 when all is well.
fn check_config(path: &std::path::Path, config: &config::Config, connect: bool) -> ExitCode {
    println!("{}: valid", path.display());
    let mut failed = false;
    let who = cli::paths::Who::service_user();
    println!("files ({}):", who.why);
    let checks = cli::paths::check(config, &who);
    for c in &checks {
        let (key, path, problems) = (c.key, c.path.display(), c.problems.join("; "));
        if c.problems.is_empty() {
            println!("  {key} {path}: OK");
        } else if c.fatal {
            failed = true;
            println!("  {key} {path}: FAILED: {problems}");
        } else {
            println!("  {key} {path}: WARNING: {problems} (the start fails unless it runs as a user who can)");
        }
    }
    if let Some(fix) = cli::paths::fix(&checks, &who) {
        println!("  to fix: {fix}");
    }
    for note in cli::paths::sandbox_notes(&checks) {
        println!("  note: {note}");
    }
    if connect {
        println!("backends (each within its own timeout):");
        let outcomes = cli::connect::check_all(config);
        if outcomes.is_empty() {
            println!("  none configured");
        }
        for o in &outcomes {
            match &o.result {
                Ok(done) if o.skipped() => println!("  {}: {done}", o.what),
                Ok(done) => println!("  {}: OK: {done} ({} ms)", o.what, o.took.as_millis()),
                Err(why) => {
                    failed = true;
                    println!("  {}: FAILED: {why} ({} ms)", o.what, o.took.as_millis());
                }
            }
        }
    }
    if failed {
        println!("check-config: FAILED (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `mxisd lookup`: the steps on standard error (log lines), the answer on standard output;
/// 0 when found, 1 when not found or a store failed.
fn lookup(config: &config::Config, medium: &str, address: &str) -> ExitCode {
    let answer = cli::lookup::run(config, medium, address);
    logging::flush();
    match answer {
        Ok(cli::lookup::Answer::Found { address, mxid }) => {
            println!("{medium} {address}: {mxid}");
            ExitCode::SUCCESS
        }
        Ok(cli::lookup::Answer::NotFound { address: Some(a) }) => {
            println!("{medium} {a}: not found");
            ExitCode::FAILURE
        }
        Ok(cli::lookup::Answer::NotFound { address: None }) => {
            println!("{medium} {address:?}: not a valid address");
            ExitCode::FAILURE
        }
        Err(why) => {
            println!("{medium} {address}: lookup failed: {why}");
            ExitCode::FAILURE
        }
    }
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

/// Gives the memory the process freed back to the system, every minute (`memory`).
fn memory_trim() -> std::io::Result<jobs::Job> {
    jobs::every(
        "memory-trim",
        mxisd::memory::TRIM_EVERY,
        mxisd::memory::release_freed,
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
    let trimmer = match memory_trim() {
        Ok(job) => job,
        Err(e) => {
            log::error!("cannot start the memory trim: {e}");
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
    trimmer.stop();
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
