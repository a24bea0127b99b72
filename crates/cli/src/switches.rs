//! Boolean flags and their deprecated `on|off` spellings.

use anyhow::{bail, Result};
use noprop_train::OnOff;
use tracing::warn;

/// A new boolean flag `--no-X` and its deprecated `--X on|off` spelling:
/// whether the feature is on, warning about the old spelling.
pub fn switch(no_flag: bool, old: Option<OnOff>, name: &str) -> Result<bool> {
    match old {
        None => Ok(!no_flag),
        Some(v) => {
            let on = bool::from(v);
            warn!(
                "--{name} on|off is deprecated and will be removed in the next release: {}",
                if on {
                    "it is the default; drop the flag".to_string()
                } else {
                    format!("use --no-{name}")
                }
            );
            if no_flag && on {
                bail!("--no-{name} contradicts --{name} on");
            }
            Ok(on && !no_flag)
        }
    }
}
