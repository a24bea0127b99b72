//! Provenance recorded in every result: git revision and host.

/// The repository's short revision: `$NOPROP_GIT_REV` if set, else `git
/// rev-parse` in the current directory, else `unknown`.
pub fn git_revision() -> String {
    if let Ok(r) = std::env::var("NOPROP_GIT_REV") {
        return r;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Host name, CPU model, rayon threads, OS and architecture.
pub fn host_info() -> serde_json::Value {
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "hostname": hostname,
        "cpu": cpu,
        "threads": rayon::current_num_threads(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
