//! One agent per journal. Two agents on one `state_dir` would both take the journal's
//! unfinished deliveries for their own and write into each other's files, so the
//! first one holds an exclusive lock on `journal.lock` beside the journal, with its pid
//! in it, and a second one stops at once and says who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::journal::JOURNAL_FILE;

/// The lock file's name inside `state_dir`.
const LOCK_FILE: &str = "journal.lock";

/// The process id of the agent running with the journal in `state_dir`, if one is.
/// Read from the lock file without taking the lock (that could stop an agent that is
/// starting in that moment), and believed only while that process lives and is tbot.
pub fn running_agent(state_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(state_dir.join(LOCK_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_tbot(pid).then_some(pid)
}

#[cfg(target_os = "linux")]
fn is_tbot(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|name| name.trim() == "tbot")
}

#[cfg(all(unix, not(target_os = "linux")))]
fn is_tbot(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

/// The exclusive lock on a journal, held for as long as this value lives.
#[derive(Debug)]
pub(crate) struct JournalLock {
    _file: File,
}

impl JournalLock {
    /// Takes the lock on the journal in `state_dir`, or says which process holds it.
    pub(crate) fn acquire(state_dir: &Path) -> anyhow::Result<JournalLock> {
        let path = state_dir.join(LOCK_FILE);
        let journal = state_dir.join(JOURNAL_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|err| {
            anyhow::anyhow!("cannot open the lock file {}: {err}", path.display())
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
                    format!("process {holder}")
                } else {
                    "another process".to_string()
                };
                anyhow::bail!(
                    "another tbot agent ({who}) is already running with the journal {}: only one \
                     agent may use a journal. Stop that one first, or give this agent its own \
                     agent.state_dir",
                    journal.display()
                );
            }
            Err(TryLockError::Error(err)) => {
                anyhow::bail!("cannot lock {}: {err}", path.display())
            }
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
        Ok(JournalLock { _file: file })
    }
}
