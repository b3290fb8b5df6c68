//! `/file remove`.

use super::items::{file_items, prop_text};
use super::{Engine, ExecError};

impl Engine {
    pub(super) fn file_remove(&mut self, ids: Vec<u32>) -> Result<(), ExecError> {
        let items = file_items(&self.store);
        let names: Vec<String> = ids
            .iter()
            .map(|id| {
                items
                    .iter()
                    .find(|i| i.id == *id)
                    .and_then(|i| prop_text(i, "name"))
                    .ok_or_else(|| ExecError("no such item".into()))
            })
            .collect::<Result<_, _>>()?;
        // Deepest first, so a directory and its contents can go in one command.
        let mut names = names;
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for name in names {
            self.store.remove_file(&name)?;
        }
        Ok(())
    }
}
