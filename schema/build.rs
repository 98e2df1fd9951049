//! Compiles `proto/` with prost. protox parses the files in pure Rust, so no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/coupon/v1/issuance.proto",
        "proto/coupon/v1/campaign.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    // The migrations are embedded by refinery's macro: a new file must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
