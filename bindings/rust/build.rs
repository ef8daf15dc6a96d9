// Without the `bundled` feature there is nothing to build: the library is
// found at run time. With it, the portable libratetrack.so.0 is built from
// the repository this crate sits in (bindings/rust/../..) and its path is
// compiled in as RATETRACK_BUNDLED_LIBRARY, the last place `load` tries.

fn main() {
    #[cfg(feature = "bundled")]
    bundled::build();
}

#[cfg(feature = "bundled")]
mod bundled {
    use std::path::{Path, PathBuf};

    pub fn build() {
        let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
        let root = manifest.join("..").join("..");
        if !root.join("CMakeLists.txt").is_file() || !root.join("include/ratetrack.h").is_file() {
            panic!(
                "the `bundled` feature builds libratetrack from the repository's sources, \
                 but {} is not a libratetrack checkout: use the crate from a checkout \
                 (cargo add ratetrack --path /path/to/libratetrack/bindings/rust)",
                root.display()
            );
        }
        // Rebuild when the library's sources change, not on every crate edit.
        for dir in ["src", "include", "cmake", "data"] {
            watch(&root.join(dir));
        }
        println!(
            "cargo:rerun-if-changed={}",
            root.join("CMakeLists.txt").display()
        );
        println!("cargo:rerun-if-env-changed=RATETRACK_DEPS_DIR");

        let mut cfg = cmake::Config::new(&root);
        cfg.define("RATETRACK_PORTABLE", "ON")
            .define("RATETRACK_BUILD_TESTS", "OFF")
            .define("RATETRACK_BUILD_BENCHMARKS", "OFF")
            .define("RATETRACK_BUILD_EXAMPLES", "OFF")
            // The library is always an optimised build, whatever the profile.
            .profile("Release")
            .build_target("ratetrack");
        if let Some(deps) = std::env::var_os("RATETRACK_DEPS_DIR") {
            cfg.define("RATETRACK_DEPS_DIR", deps);
        }
        let out = cfg.build();
        // build_target skips the install step: the library is in build/.
        let lib = out.join("build").join("libratetrack.so.0");
        if !lib.is_file() {
            panic!("the CMake build did not produce {}", lib.display());
        }
        println!(
            "cargo:rustc-env=RATETRACK_BUNDLED_LIBRARY={}",
            lib.display()
        );
    }

    fn watch(dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(_) => return,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                watch(&path);
            } else {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
