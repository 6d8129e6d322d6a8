//! The pod's volumes as `docker run` mounts (see [`super::pod`] for the rules): hostPaths,
//! ConfigMaps and Secrets written in the kubelet's atomic-writer layout, emptyDirs.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _, symlink},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{
    base64_decode,
    pod::{Translation, quantity},
};

impl Translation {
    pub(super) fn volumes(
        &mut self,
        spec: &Value,
        mounts: &Value,
        objects: &[Value],
        args: &mut Vec<String>,
    ) {
        let volumes: BTreeMap<&str, (usize, &Value)> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| (v["name"].as_str().unwrap_or_default(), (i, v)))
            .collect();
        for (i, m) in mounts.as_array().into_iter().flatten().enumerate() {
            let at = format!("spec.template.spec.containers[0].volumeMounts[{i}]");
            self.only(m, &at, &["name", "mountPath", "readOnly"]);
            let target = m["mountPath"].as_str().unwrap_or_default();
            let read_only = m["readOnly"] == true;
            let name = m["name"].as_str().unwrap_or_default();
            let Some(&(vi, volume)) = volumes.get(name) else {
                self.fail(&at, &format!("no volume {name}"));
                continue;
            };
            let at = format!("spec.template.spec.volumes[{vi}]");
            self.only(
                volume,
                &at,
                &["name", "hostPath", "configMap", "secret", "emptyDir"],
            );
            let ro = if read_only { ":ro" } else { "" };
            if let Some(host) = volume.get("hostPath") {
                if let Some(source) = self.host_path(host, &at, read_only) {
                    args.extend(["--volume".into(), format!("{source}:{target}{ro}")]);
                }
            } else if let Some(cm) = volume.get("configMap") {
                self.only(cm, &at, &["name", "optional", "defaultMode"]);
                let dir = self.data_volume(objects, "ConfigMap", &cm["name"], cm, 0o644);
                args.extend(["--volume".into(), format!("{dir}:{target}{ro}")]);
            } else if let Some(secret) = volume.get("secret") {
                self.only(secret, &at, &["secretName", "optional", "defaultMode"]);
                let dir = self.data_volume(objects, "Secret", &secret["secretName"], secret, 0o644);
                args.extend(["--volume".into(), format!("{dir}:{target}{ro}")]);
            } else if let Some(empty) = volume.get("emptyDir") {
                self.only(empty, &at, &["medium", "sizeLimit"]);
                if empty["medium"] == "Memory" {
                    let mut opts = format!("{target}:mode=0777");
                    if let Some(bytes) = quantity(&empty["sizeLimit"]) {
                        opts.push_str(&format!(",size={}", (bytes / 1000.0) as u64));
                    }
                    args.extend(["--tmpfs".into(), opts]);
                } else {
                    let dir = self.root.join(format!("emptydir-{name}"));
                    make_dir(&dir, 0o777);
                    args.extend(["--volume".into(), format!("{}:{target}", dir.display())]);
                }
            } else {
                self.fail(&at, "no volume source that is translated");
            }
        }
    }

    /// The source of a hostPath mount: the host's own path when mounted read-only, else a
    /// directory of the test standing in for it.
    fn host_path(&mut self, host: &Value, at: &str, read_only: bool) -> Option<String> {
        self.only(host, &format!("{at}.hostPath"), &["path", "type"]);
        let path = host["path"].as_str().unwrap_or_default().to_owned();
        let kind = host["type"].as_str().unwrap_or("");
        if read_only {
            let exists = Path::new(&path).exists();
            match kind {
                "Directory" if !Path::new(&path).is_dir() => {
                    self.fail(at, &format!("{path} is not a directory on this host"));
                }
                "Socket" if !fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket()) => {
                    self.fail(at, &format!("{path} is not a socket on this host"));
                }
                "" | "Directory" | "DirectoryOrCreate" | "Socket" if exists => {}
                _ => self.fail(at, &format!("hostPath type {kind:?} at {path}")),
            }
            return Some(path);
        }
        if !matches!(kind, "DirectoryOrCreate" | "Directory") {
            self.fail(at, &format!("writable hostPath of type {kind:?}"));
            return None;
        }
        let stand_in = self.root.join(format!("host{}", path.replace('/', "_")));
        make_dir(&stand_in, 0o755);
        self.redirected.insert(path, stand_in.clone());
        Some(stand_in.display().to_string())
    }

    /// Writes a ConfigMap's or Secret's data into a directory as the kubelet lays it out.
    fn data_volume(
        &mut self,
        objects: &[Value],
        kind: &str,
        name: &Value,
        source: &Value,
        default_mode: u32,
    ) -> String {
        let name = name.as_str().unwrap_or_default();
        let dir = self.root.join(format!("{}-{name}", kind.to_lowercase()));
        make_dir(&dir, 0o755);
        let object = objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
        let mut files = Vec::new();
        match object {
            Some(o) => {
                for (key, value) in o["data"].as_object().into_iter().flatten() {
                    let text = value.as_str().unwrap_or_default();
                    let bytes = match kind {
                        "Secret" => base64_decode(text),
                        _ => text.as_bytes().to_vec(),
                    };
                    files.push((key.clone(), bytes));
                }
            }
            None if source["optional"] == true => {}
            None => self.fail(kind, &format!("{name} is mounted but not rendered")),
        }
        let mode = source["defaultMode"]
            .as_u64()
            .map_or(default_mode, |m| m as u32);
        atomic_write(&dir, &files, mode);
        self.data_dirs.insert(name.to_owned(), dir.clone());
        dir.display().to_string()
    }
}

fn make_dir(dir: &Path, mode: u32) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.display()));
}

/// The kubelet's atomic writer: files in `..<timestamp>/`, `..data` pointing at it (swapped by
/// a rename), and each key a symlink `KEY -> ..data/KEY`.
#[track_caller]
pub(super) fn atomic_write(dir: &Path, files: &[(String, Vec<u8>)], mode: u32) {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let version = format!("..{stamp}");
    let version_dir = dir.join(&version);
    make_dir(&version_dir, 0o755);
    for (key, bytes) in files {
        let file = version_dir.join(key);
        fs::write(&file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let old = fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&version, &tmp).expect("..data_tmp symlink");
    fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (key, _) in files {
        let link = dir.join(key);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(key), &link).expect("key symlink");
        }
    }
    // Keys gone from the new data lose their links, as the kubelet removes them.
    for entry in fs::read_dir(dir).expect("list the volume").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !files.iter().any(|(key, _)| *key == name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = fs::remove_dir_all(dir.join(old));
    }
}
