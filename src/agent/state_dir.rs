//! The agent's state folder (`agent.state_dir`): where the journal lives. It names every
//! job and file the print floor handled, so it is made private to tbot's user.

use std::path::Path;

/// Creates `dir` and any missing parents, private (0700) where tbot makes them. A
/// folder that exists is left as the operator made it.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|err| anyhow::anyhow!("cannot create agent.state_dir {}: {err}", dir.display()))
}
