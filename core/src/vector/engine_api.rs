//! Vector methods of [`Engine`].

use super::collection::{push_raw, Collection};
use super::record::{self, CatalogEntry};
use super::VectorConfig;
use crate::batch::WriteBatch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::types::Operation;

impl Engine {
    /// Creates the vector collection `name` in namespace `ns` (or opens it
    /// when it exists with the same configuration) and returns a handle.
    /// The catalog record is written through the WAL like any other record.
    pub fn create_collection(
        &self,
        ns: &[u8],
        name: &str,
        config: VectorConfig,
    ) -> Result<Collection<'_>> {
        record::check_names(ns, name.as_bytes())?;
        config.validate()?;
        let id = record::collection_id(ns, name.as_bytes());
        let entry = CatalogEntry {
            config,
            ns: ns.to_vec(),
            name: name.as_bytes().to_vec(),
        };
        match self.catalog(id)? {
            Some((e, _)) if e.ns != entry.ns || e.name != entry.name => {
                return Err(Error::invalid(format!(
                    "collection id of {name:?} collides with another collection; pick another name"
                )))
            }
            Some((e, _)) if e.config != config => {
                return Err(Error::invalid(format!(
                    "collection {name:?} exists with a different configuration ({:?})",
                    e.config
                )))
            }
            Some(_) => {}
            None => {
                let mut b = WriteBatch::new();
                push_raw(
                    &mut b,
                    Operation::Put,
                    record::catalog_key(id),
                    record::encode_catalog(&entry),
                    0,
                )?;
                self.write(b)?;
            }
        }
        self.vectors(ns, name)
    }

    /// A handle on the existing collection `name` in `ns`; loads its index
    /// on first use (from its file when valid, else from the records).
    pub fn vectors(&self, ns: &[u8], name: &str) -> Result<Collection<'_>> {
        record::check_names(ns, name.as_bytes())?;
        let id = record::collection_id(ns, name.as_bytes());
        let reg = self.vector_registry();
        if let Some(state) = reg.get(id) {
            self.read_view()?; // fails when closed
            return Ok(Collection {
                engine: self,
                state,
            });
        }
        let Some((entry, raw)) = self.catalog(id)? else {
            return Err(Error::invalid(format!(
                "no vector collection {name:?} in namespace {:?}",
                String::from_utf8_lossy(ns)
            )));
        };
        if entry.ns != ns || entry.name != name.as_bytes() {
            return Err(Error::invalid(format!(
                "no vector collection {name:?} in this namespace"
            )));
        }
        let now = self.config().clock.now_nanos();
        let state = reg.open(
            id,
            entry,
            &raw,
            &|| self.read_view(),
            &|| self.wal_barrier(),
            now,
        )?;
        Ok(Collection {
            engine: self,
            state,
        })
    }

    /// Names and configurations of the collections of `ns`.
    pub fn list_collections(&self, ns: &[u8]) -> Result<Vec<(String, VectorConfig)>> {
        let view = self.read_view()?;
        let prefix = [record::SPACE, record::CATALOG_TAG];
        let mut out = Vec::new();
        for e in super::persist::scan_versions(&view.version, &prefix, view.read_lsn)? {
            if e.key.len() != record::PREFIX_LEN
                || out.iter().any(|(_, k): &(_, Vec<u8>)| *k == e.key)
            {
                continue;
            }
            let key = e.key.clone();
            if !e.is_live_at(view.read_time) {
                out.push((None, key));
                continue;
            }
            let c = record::decode_catalog(e.value.as_deref().unwrap_or_default()).ok();
            out.push((c.filter(|c| c.ns == ns), key));
        }
        Ok(out
            .into_iter()
            .filter_map(|(c, _)| c)
            .map(|c| (String::from_utf8_lossy(&c.name).into_owned(), c.config))
            .collect())
    }

    fn catalog(&self, id: u64) -> Result<Option<(CatalogEntry, Vec<u8>)>> {
        let view = self.read_view()?;
        let Some(e) = view
            .version
            .get(&record::catalog_key(id), view.read_lsn)?
            .filter(|e| e.is_live_at(view.read_time))
        else {
            return Ok(None);
        };
        let raw = e.value.unwrap_or_default();
        let entry = record::decode_catalog(&raw)
            .map_err(|m| Error::corruption("vector catalog record", 0, m))?;
        Ok(Some((entry, raw)))
    }
}
