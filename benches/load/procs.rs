//! Child processes (mock, gateway, bare proxy, Redis), building the binaries, and what
//! `/proc` says about a process and the machine.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How many lines of a child's stdout (after its ready line) are echoed to stderr.
const ECHO_LINES: usize = 40;

/// A running child process, killed when dropped (on return, on panic, on Ctrl-C).
#[derive(Debug)]
pub(crate) struct ChildProc {
    name: String,
    child: Child,
    /// The line that said it was ready (for servers, `... listening on http://ADDR`).
    ready_line: String,
}

impl ChildProc {
    /// Spawns `command` with stdout piped and waits until a stdout line contains
    /// `marker`, for at most `timeout`. With `echo`, the first lines it prints after
    /// that go to stderr (a gateway's warnings, say).
    pub(crate) fn spawn(
        name: &str,
        mut command: Command,
        marker: &'static str,
        timeout: Duration,
        echo: bool,
    ) -> Result<ChildProc, String> {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name} ({command:?}): {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let prefix = format!("[{name}]");
        std::thread::spawn(move || {
            // Until the ready line, `tx` is there to send it; then the thread keeps
            // draining stdout so the child never blocks on a full pipe.
            let mut tx = Some(tx);
            let mut echoed = 0;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.is_some() && line.contains(marker) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line);
                    }
                    continue;
                }
                if echo && echoed < ECHO_LINES {
                    let _ = writeln!(std::io::stderr().lock(), "{prefix} {line}");
                    echoed += 1;
                    if echoed == ECHO_LINES {
                        eprintln!("{prefix} (further output not shown)");
                    }
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(ready_line) => Ok(ChildProc {
                name: name.to_owned(),
                child,
                ready_line,
            }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "{name} did not say \"{marker}\" ({}; exit status {status:?})",
                    match e {
                        mpsc::RecvTimeoutError::Timeout => format!("waited {timeout:?}"),
                        mpsc::RecvTimeoutError::Disconnected => "its stdout closed".to_owned(),
                    }
                ))
            }
        }
    }

    /// The `http://ADDR` a server printed in its ready line.
    pub(crate) fn url(&self) -> Option<&str> {
        self.ready_line
            .find("http://")
            .map(|at| self.ready_line[at..].trim())
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(why)` when it has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root (the bench is in the root package).
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the gateway and the mock provider, in release, with the cargo that runs the
/// bench.
pub(crate) fn build_binaries(root: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("load: building gateway and mock-provider (release)...");
    let mut command = Command::new(&cargo);
    // What cargo set for this bench's own process is not ours to pass on: build scripts
    // that watch these variables would see them change and rebuild, back and forth
    // between `cargo bench` and this build.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&name)
        {
            command.env_remove(name);
        }
    }
    let status = command
        .args([
            "build",
            "--release",
            "-p",
            "tower-ai-gateway",
            "-p",
            "tower-ai-mock",
            "--bins",
        ])
        .current_dir(root)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {cargo:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed: {status}"))
    }
}

/// Where the release binaries are: `$CARGO_TARGET_DIR/release`, else next to this
/// bench's own executable (`target/release/deps/load-*`), else `<root>/target/release`.
pub(crate) fn release_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return root.join(dir).join("release");
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent().map(Path::to_path_buf))?
    });
    from_exe.unwrap_or_else(|| root.join("target").join("release"))
}

/// The target directory (for the JSON results).
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    release_dir(root)
        .parent()
        .map_or_else(|| root.join("target"), Path::to_path_buf)
}

/// Resident set size, in KiB (`VmRSS` in `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User plus system CPU time in clock ticks (`utime + stime` in `/proc/<pid>/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's CPU time in clock ticks, from `/proc/stat`: busy (user + nice + system
/// + irq + softirq) and stolen (time the hypervisor gave to someone else).
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some((busy, *v.get(7)?))
}

/// CPU time of the kernel's own threads (children of `kthreadd`), in clock ticks: where
/// the network's softirq work lands when it is deferred, i.e. the bench's own traffic.
pub(crate) fn kernel_thread_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3: ppid is field 4, utime and stime 14 and 15.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if pid == 2 || field(4) == Some(2) {
            total += field(14).unwrap_or(0) + field(15).unwrap_or(0);
        }
    }
    total
}

/// A snapshot of where the machine's CPU went, to tell the bench's share from everyone
/// else's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSnapshot {
    busy: u64,
    stolen: u64,
    ours: u64,
    kernel: u64,
}

impl CpuSnapshot {
    /// Now, with `ours` the bench's processes.
    pub(crate) fn take(ours: &[u32]) -> Option<CpuSnapshot> {
        let (busy, stolen) = machine_ticks()?;
        Some(CpuSnapshot {
            busy,
            stolen,
            ours: ours.iter().filter_map(|&pid| cpu_ticks(pid)).sum(),
            kernel: kernel_thread_ticks(),
        })
    }

    /// Ticks since `earlier`: (used by processes that are not ours and not the kernel's,
    /// stolen by the hypervisor).
    pub(crate) fn others_since(&self, earlier: &CpuSnapshot) -> (u64, u64) {
        let busy = self.busy.saturating_sub(earlier.busy);
        let accounted =
            self.ours.saturating_sub(earlier.ours) + self.kernel.saturating_sub(earlier.kernel);
        (
            busy.saturating_sub(accounted),
            self.stolen.saturating_sub(earlier.stolen),
        )
    }
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that fails).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The soft limit on open files, from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The machine: logical CPUs and the CPU model.
pub(crate) fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    (cpus, model)
}

/// `git rev-parse --short HEAD`, with `-dirty` when the work tree has changes.
pub(crate) fn git_commit(root: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// Now, as an RFC 3339 UTC timestamp.
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A free loopback port (bound, read, released), for servers that cannot take port 0.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
