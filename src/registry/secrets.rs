//! Secret values of functions: write-only through the API, kept in
//! `registry/secrets/<name>/v<N>-<generation>.json` in a folder only the server's user can read, and read
//! back only to build a run's environment. The registry holds their names, never their values.

use crate::platform;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    pub fn new(dir: PathBuf) -> SecretStore {
        SecretStore { dir }
    }

    /// The folder of one function's secrets.
    pub fn folder(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn file(&self, name: &str, generation: &str, version: u32) -> PathBuf {
        let stem = super::data_dir::version_stem(generation, version);
        self.folder(name).join(format!("{stem}.json"))
    }

    /// Stores the values of a version (nothing when there are none).
    pub fn write(
        &self,
        name: &str,
        generation: &str,
        version: u32,
        values: &BTreeMap<String, String>,
    ) -> io::Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        for dir in [&self.dir, &self.folder(name)] {
            platform::create_dir_durably(dir)?;
            platform::make_private(dir)?;
        }
        let bytes = serde_json::to_vec(values).map_err(io::Error::other)?;
        platform::write_atomically(&self.file(name, generation, version), &bytes)
    }

    /// The values of a version; none when it has no file.
    pub fn read(
        &self,
        name: &str,
        generation: &str,
        version: u32,
    ) -> io::Result<BTreeMap<String, String>> {
        match std::fs::read(self.file(name, generation, version)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(err) => Err(err),
        }
    }

    /// The file of a version, for removal with the version.
    pub fn version_file(&self, name: &str, generation: &str, version: u32) -> PathBuf {
        self.file(name, generation, version)
    }
}

#[cfg(test)]
mod tests {
    use super::SecretStore;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_and_privacy() {
        let root = std::env::temp_dir().join(format!("golambda-secrets-{}", crate::ids::new_id()));
        let store = SecretStore::new(root.join("secrets"));
        let mut values = BTreeMap::new();
        values.insert("API_KEY".to_string(), "s3cr3t".to_string());
        store.write("f", "g1", 2, &values).expect("write");
        assert_eq!(store.read("f", "g1", 2).expect("read"), values);
        assert!(store.read("f", "g1", 1).expect("absent").is_empty());
        assert!(
            store.read("f", "g2", 2).expect("absent").is_empty(),
            "another generation's secrets are not this one's"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.folder("f"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secrets folder must be private: {mode:o}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
