//! A hotfolder's staging folder, reached only through directory handles.
//!
//! A hotfolder is shared with devices and people: anyone who can write there could plant
//! a symbolic link or swap a folder to make tbot write, truncate, delete or move files
//! elsewhere. So the hotfolder is opened once per delivery (its configured path may be a
//! symbolic link: operators link shares), its `.tbot` folder is opened *without* following
//! links and must be a private folder of tbot's own user, and every later step (create,
//! resume, remove, move in) is relative to those two handles. Staged files are created
//! exclusively (`O_EXCL`), never opened through a link, and only regular files tbot
//! created are ever moved into the hotfolder.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// The hidden folder inside each hotfolder where files are staged. Being on the same
/// file system as the hotfolder makes the final move a rename, never a copy.
pub(crate) const STAGING_DIR: &str = ".tbot";

/// How every folder here is opened.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// A folder files are moved into: the hotfolder, a subfolder of it, or a job folder
/// being put together.
#[derive(Debug)]
pub(crate) struct Target {
    fd: OwnedFd,
    /// Its path relative to the hotfolder, with a trailing `/` (empty for the
    /// hotfolder itself), to name what lands in it.
    prefix: String,
}

impl Target {
    /// The path of `name` in this folder, relative to the hotfolder.
    pub(crate) fn path_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Writes `bytes` as the file `name` in this folder, anew and synced: a job
    /// ticket inside a job folder.
    pub(crate) fn write_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_anew(&self.fd, name, bytes)
    }

    /// Whether anything in this folder has the name `name`.
    pub(crate) fn holds(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// The part of `path` (relative to the hotfolder) below this folder.
    pub(crate) fn relative<'p>(&self, path: &'p str) -> &'p str {
        path.strip_prefix(&self.prefix).unwrap_or(path)
    }

    /// Makes what was moved into this folder durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(Into::into)
    }
}

/// The staging folder of one hotfolder, open.
#[derive(Debug)]
pub(crate) struct StagingDir {
    root_path: PathBuf,
    root: OwnedFd,
    dir: OwnedFd,
    /// The user id files tbot creates here get: its own, or the one a network share
    /// maps it to.
    owner: u32,
}

impl StagingDir {
    /// Opens the hotfolder at `root` and its staging folder, creating the latter private
    /// (0700). The error is the reason the queue cannot take files, in words.
    pub(crate) fn open(root: &Path) -> Result<StagingDir, String> {
        let shown = root.display();
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| match err {
            Errno::NOENT => format!("hotfolder {shown} does not exist"),
            Errno::NOTDIR => format!("hotfolder {shown} is not a folder"),
            err => format!(
                "hotfolder {shown} cannot be opened: {}",
                io::Error::from(err)
            ),
        })?;
        let staging = root.join(STAGING_DIR);
        let staging_shown = staging.display();
        match rustix::fs::mkdirat(&root_fd, STAGING_DIR, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => {
                return Err(format!(
                    "hotfolder {shown} is not writable: cannot create {staging_shown}: {}",
                    io::Error::from(err)
                ))
            }
        }
        let dir = rustix::fs::openat(
            &root_fd,
            STAGING_DIR,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| match err {
            Errno::LOOP | Errno::NOTDIR => format!(
                "staging folder {staging_shown} is a symbolic link or not a folder; tbot does not \
                 follow links in a hotfolder: remove it and tbot makes its own"
            ),
            err => format!(
                "staging folder {staging_shown} cannot be opened: {}",
                io::Error::from(err)
            ),
        })?;
        let stat = rustix::fs::fstat(&dir)
            .map_err(|err| format!("staging folder {staging_shown}: {}", io::Error::from(err)))?;
        // A folder tbot cannot make a file in is not its own either.
        let me = files_owner(&dir).unwrap_or_else(|_| rustix::process::geteuid().as_raw());
        if stat.st_uid != me {
            return Err(format!(
                "staging folder {staging_shown} belongs to user id {}, not to the user tbot runs \
                 as ({me}); tbot only stages in a folder of its own: remove it and tbot makes its own",
                stat.st_uid
            ));
        }
        if stat.st_mode & 0o077 != 0 {
            rustix::fs::fchmod(&dir, Mode::RWXU).map_err(|err| {
                format!(
                    "staging folder {staging_shown} cannot be made private: {}",
                    io::Error::from(err)
                )
            })?;
        }
        Ok(StagingDir {
            root_path: root.to_path_buf(),
            root: root_fd,
            dir,
            owner: me,
        })
    }

    /// The hotfolder's path, for messages.
    pub(crate) fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// Creates a new, empty staged file `name`; fails if anything by that name exists.
    /// It gets the permissions any new file gets (0666 less the umask): the private
    /// folder keeps others out while it is staged, and once moved in, the device (often
    /// another user, or a share) must be able to read it.
    pub(crate) fn create(&self, name: &str) -> io::Result<File> {
        create_new(&self.dir, name)
    }

    /// Opens the staged file `name` to carry on with it, if there is one. Anything but a
    /// regular file of tbot's own user with one name is refused, never written through.
    pub(crate) fn open_staged(&self, name: &str) -> io::Result<Option<File>> {
        let fd = match rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(not_ours(name)),
            Err(err) => return Err(err.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || stat.st_uid != self.owner
            || stat.st_nlink != 1
        {
            return Err(not_ours(name));
        }
        Ok(Some(File::from(fd)))
    }

    /// Removes the staged file `name`; one that is not there is fine. Never follows a
    /// link: a link by that name is removed itself.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Renames staged file `old` to `new` inside the staging folder, unless `new`
    /// exists; whether it did. A link is renamed as itself, never followed.
    pub(crate) fn rename(&self, old: &str, new: &str) -> io::Result<bool> {
        match rustix::fs::renameat_with(&self.dir, old, &self.dir, new, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT | Errno::EXIST) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The names in the staging folder that `keep_if` picks, to clear what is left over.
    pub(crate) fn names(&self, mut keep_if: impl FnMut(&str) -> bool) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().to_str() {
                if keep_if(name) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// The folder `path` below the hotfolder (the hotfolder itself when empty), made as
    /// needed. Each step is opened without following links: a link planted in a shared
    /// hotfolder never leads a drop elsewhere.
    pub(crate) fn folder(&self, path: &[String]) -> io::Result<Target> {
        let mut fd = rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())?;
        for (depth, step) in path.iter().enumerate() {
            match rustix::fs::mkdirat(&fd, step.as_str(), Mode::from_raw_mode(0o777)) {
                Ok(()) => self.like_the_hotfolder(&fd, step)?,
                Err(Errno::EXIST) => {}
                Err(err) => return Err(err.into()),
            }
            fd = rustix::fs::openat(&fd, step.as_str(), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|err| match err {
                    Errno::LOOP | Errno::NOTDIR => io::Error::other(format!(
                        "{} is a symbolic link or not a folder; tbot does not follow links in a hotfolder",
                        path[..=depth].join("/")
                    )),
                    err => err.into(),
                })?;
        }
        Ok(Target {
            fd,
            prefix: path.iter().map(|step| format!("{step}/")).collect(),
        })
    }

    /// Moves the staged file `name` into folder `target` as `final_name`, in one atomic
    /// step that fails with `AlreadyExists` rather than replace anything. Only a regular
    /// file is moved. On Linux this is `renameat2` with `RENAME_NOREPLACE`: the file
    /// leaves staging and appears in the hotfolder at the same instant. Where the file
    /// system cannot do that (some network shares), a hard link followed by removing
    /// the staged name gives the same guarantee for the device.
    pub(crate) fn place(&self, name: &str, target: &Target, final_name: &str) -> io::Result<()> {
        let stat = rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(not_ours(name));
        }
        match self.move_without_replacing(name, target, final_name) {
            Ok(()) => return Ok(()),
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
            Err(err) => return Err(err.into()),
        }
        rustix::fs::linkat(&self.dir, name, &target.fd, final_name, AtFlags::empty())?;
        self.remove(name)
    }

    /// After a crash: whether the move of staged `name` to `final_path` (relative to
    /// the hotfolder) took place. The staged name only goes away with the move, so a
    /// missing staged file means it did.
    pub(crate) fn was_placed(&self, name: &str, final_path: &str) -> bool {
        match rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => true,
            Err(_) => false,
            Ok(staged) => rustix::fs::statat(&self.root, final_path, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|placed| {
                    placed.st_dev == staged.st_dev && placed.st_ino == staged.st_ino
                }),
        }
    }

    /// Gives the folder tbot just made, `name` in `parent`, the hotfolder's permission
    /// bits: a device running as another user must be able to take files out of it,
    /// and move it whole, as it can in the hotfolder itself, whatever tbot's umask.
    fn like_the_hotfolder(&self, parent: &OwnedFd, name: &str) -> io::Result<()> {
        let mode = rustix::fs::fstat(&self.root)?.st_mode & 0o3777;
        let made = rustix::fs::openat(parent, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        rustix::fs::fchmod(&made, Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Renames staged `name` into `target` as `final_name` unless that name is taken.
    fn move_without_replacing(
        &self,
        name: &str,
        target: &Target,
        final_name: &str,
    ) -> rustix::io::Result<()> {
        rustix::fs::renameat_with(
            &self.dir,
            name,
            &target.fd,
            final_name,
            RenameFlags::NOREPLACE,
        )
    }

    /// Makes what was created or renamed in the staging folder durable.
    pub(crate) fn sync_staging(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.dir).map_err(Into::into)
    }

    /// Whether anything is staged under `name`.
    pub(crate) fn holds(&self, name: &str) -> bool {
        rustix::fs::statat(&self.dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Writes `bytes` as the staged file `name`, anew, synced: a job ticket.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_anew(&self.dir, name, bytes)
    }

    /// Opens (making it if needed) the staged folder `name` a job folder is put
    /// together in. It gets the permissions any new folder gets, since it is moved
    /// into the hotfolder whole; anything but tbot's own folder is refused.
    pub(crate) fn job_folder(&self, name: &str) -> io::Result<Target> {
        match rustix::fs::mkdirat(&self.dir, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => self.like_the_hotfolder(&self.dir, name)?,
            Err(Errno::EXIST) => {}
            Err(err) => return Err(err.into()),
        }
        let fd = rustix::fs::openat(&self.dir, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|err| match err {
            Errno::LOOP | Errno::NOTDIR => not_ours(name),
            err => err.into(),
        })?;
        if rustix::fs::fstat(&fd)?.st_uid != self.owner {
            return Err(not_ours(name));
        }
        Ok(Target {
            fd,
            prefix: String::new(),
        })
    }

    /// Moves staged file `name` into the job folder being put together as `final_name`,
    /// replacing a copy an earlier attempt left there: both are inside tbot's private
    /// staging folder, so a plain rename (which every file system has) is safe. Whether
    /// it was still staged: after a crash it may be in the folder already.
    pub(crate) fn move_into(
        &self,
        name: &str,
        folder: &Target,
        final_name: &str,
    ) -> io::Result<bool> {
        match rustix::fs::renameat(&self.dir, name, &folder.fd, final_name) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Moves the job folder `name`, put together in staging, into `target` as
    /// `final_name` in one step, never replacing anything: a device watching for
    /// folders sees the whole job or nothing. Where the file system has no such move,
    /// the folder is moved once nothing is found by its name.
    pub(crate) fn place_folder(
        &self,
        name: &str,
        target: &Target,
        final_name: &str,
    ) -> io::Result<()> {
        match self.move_without_replacing(name, target, final_name) {
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
            done => return done.map_err(Into::into),
        }
        if rustix::fs::statat(&target.fd, final_name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        rustix::fs::renameat(&self.dir, name, &target.fd, final_name).map_err(Into::into)
    }

    /// Removes the staged job folder `name` and what is in it (only plain names tbot
    /// gave); one that is not there is fine.
    pub(crate) fn remove_job_folder(&self, name: &str) -> io::Result<()> {
        let folder = match self.job_folder_if_any(name)? {
            Some(folder) => folder,
            None => return Ok(()),
        };
        for entry in rustix::fs::Dir::read_from(&folder.fd)? {
            let entry = entry?;
            let inner = entry.file_name();
            if inner.to_bytes() != b"." && inner.to_bytes() != b".." {
                rustix::fs::unlinkat(&folder.fd, inner, AtFlags::empty())?;
            }
        }
        match rustix::fs::unlinkat(&self.dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    fn job_folder_if_any(&self, name: &str) -> io::Result<Option<Target>> {
        if !self.holds(name) {
            return Ok(None);
        }
        self.job_folder(name).map(Some)
    }

    /// Makes the empty file `name` in `target` (a trigger), unless something has that
    /// name already: whether it made it.
    pub(crate) fn touch(&self, target: &Target, name: &str) -> io::Result<bool> {
        match create_new(&target.fd, name) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Makes the moves into the hotfolder durable: syncs `target`, the hotfolder and
    /// the staging folder, once for all the files of a delivery.
    pub(crate) fn sync(&self, target: &Target) -> io::Result<()> {
        rustix::fs::fsync(&target.fd)?;
        rustix::fs::fsync(&self.root)?;
        rustix::fs::fsync(&self.dir)?;
        Ok(())
    }

    /// Free bytes on the hotfolder's file system for an unprivileged user, and the
    /// longest file name it takes.
    pub(crate) fn space_and_name_max(&self) -> io::Result<(u64, usize)> {
        let stat = rustix::fs::fstatvfs(&self.root)?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        Ok((free, usize::try_from(stat.f_namemax).unwrap_or(usize::MAX)))
    }
}

/// The user id that files tbot creates in `dir` get. Locally that is tbot's own; on a
/// network share it may be another (NFS maps root to `nobody`, a CIFS mount has its
/// `uid=`), which only a file made there tells: one is made and removed, but only when
/// the folder's owner is not tbot's own user, so the usual case costs nothing.
fn files_owner(dir: &OwnedFd) -> rustix::io::Result<u32> {
    let me = rustix::process::geteuid().as_raw();
    if rustix::fs::fstat(dir)?.st_uid == me {
        return Ok(me);
    }
    let probe = format!(".owner-{}", std::process::id());
    let fd = rustix::fs::openat(
        dir,
        &probe,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    let owner = rustix::fs::fstat(&fd).map(|stat| stat.st_uid);
    rustix::fs::unlinkat(dir, &probe, AtFlags::empty())?;
    owner
}

/// Creates the new file `name` in `dir`, never through a link and never over anything.
/// It gets the permissions any new file gets (0666 less the umask): the device, often
/// another user, must be able to read it.
fn create_new(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    Ok(File::from(fd))
}

/// Writes `bytes` as the file `name` in `dir`, replacing what tbot wrote there before
/// (a name, never a link's target), and syncs it.
fn write_anew(dir: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(err) => return Err(err.into()),
    }
    let mut file = create_new(dir, name)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn not_ours(name: &str) -> io::Error {
    io::Error::other(format!(
        "{STAGING_DIR}/{name} is not a regular file tbot staged; it is left alone"
    ))
}
