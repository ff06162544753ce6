//! Compiles Egret's declaration of GTFS-realtime (`proto/egret_gtfs_realtime.proto`) into
//! Rust types with prost. protox parses the .proto in pure Rust, so building needs
//! no `protoc` binary on the machine, CI's included.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/egret_gtfs_realtime.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    prost_build::Config::new()
        // The schema's comments stay in the .proto: copied into rustdoc, their
        // indented examples would be run as doctests.
        .disable_comments(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
