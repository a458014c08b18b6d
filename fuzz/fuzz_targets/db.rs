//! The configuration database loader on any file contents: never panics,
//! errors are one line naming the file, and an accepted configuration
//! survives saving (pretty JSON, as `db::save` writes it) and loading again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_switch::db;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz/conf.json");
    match db::parse(path, data) {
        Ok(cfg) => {
            let text = serde_json::to_vec_pretty(&cfg).expect("a loaded config encodes");
            let again = db::parse(path, &text).expect("a saved config loads");
            assert_eq!(again, cfg, "config changed through save/load");
        }
        Err(e) => {
            assert!(!e.contains('\n'), "error is not one line: {e}");
            assert!(e.contains("/fuzz/conf.json"), "error does not name the file: {e}");
        }
    }
});
