//! `--watch-rules`: whether the rule files changed since the last look.

use std::path::PathBuf;

/// What the rule files are, as far as a change goes: each file's resolved identity, size and
/// modification time. A Kubernetes ConfigMap update writes a new directory and swaps the
/// `..data` symlink the files point through: the resolved files change (new inodes) although
/// their names do not. Polling, not inotify: a watch on the files would follow the old
/// inodes and miss the swap, and a watch on the right directories depends on the layout;
/// a stat of a few files every two seconds costs nothing.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RuleFiles(Vec<(PathBuf, Option<Stamp>)>);

/// Device, inode, size, modification time (s, ns) of a file, its symlinks followed.
type Stamp = (u64, u64, u64, i64, i64);

impl RuleFiles {
    pub(super) fn read(paths: &[PathBuf]) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let mut errors = Vec::new();
        let files = crate::rules::load::discover(paths, &mut errors);
        Self(
            files
                .into_iter()
                .map(|f| {
                    let m = std::fs::metadata(&f)
                        .ok()
                        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
                    (f, m)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::symlink};

    use super::RuleFiles;
    use crate::testutil::TempDir;

    /// A ConfigMap update as kubelet writes it: a new timestamped directory, then the `..data`
    /// symlink swapped; the file names (links through `..data`) stay.
    #[test]
    fn a_configmap_symlink_swap_is_a_change_and_a_look_without_one_is_not() {
        let dir = TempDir::new("rule-files");
        let root = dir.path();
        fs::create_dir(root.join("..2026_12_02_1")).expect("v1 dir");
        fs::write(root.join("..2026_12_02_1/a.yaml"), "x: 1\n").expect("v1");
        symlink("..2026_12_02_1", root.join("..data")).expect("..data");
        symlink("..data/a.yaml", root.join("a.yaml")).expect("a.yaml");
        let paths = vec![root.to_path_buf()];
        let before = RuleFiles::read(&paths);
        assert_eq!(before, RuleFiles::read(&paths));
        fs::create_dir(root.join("..2026_12_02_2")).expect("v2 dir");
        fs::write(root.join("..2026_12_02_2/a.yaml"), "x: 2\n").expect("v2");
        symlink("..2026_12_02_2", root.join("..data_tmp")).expect("tmp link");
        fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        assert_ne!(before, RuleFiles::read(&paths));
    }
}
