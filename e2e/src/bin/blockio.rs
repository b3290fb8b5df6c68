//! blockio: O_DIRECT block I/O for the QEMU guest's NVMe/TCP benchmark, since the guest has no fio.
//! Sequential or random, read or write, one request at a time per job; prints one line of figures.
//! Runs in the guest, dynamically linked against the glibc the image carries.
//!
//! `blockio /dev/nvme0n1 rand-read --block-size 4096 --bytes 8388608`

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// O_DIRECT needs buffers aligned to the logical block size; a page covers every device here.
const ALIGN: usize = 4096;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Pattern {
    SeqRead,
    SeqWrite,
    RandRead,
    RandWrite,
}

#[derive(Parser, Debug)]
struct Args {
    device: PathBuf,
    #[arg(value_enum)]
    pattern: Pattern,
    /// Bytes per request (a multiple of 4096).
    #[arg(long)]
    block_size: usize,
    /// Bytes moved in total, over all jobs.
    #[arg(long)]
    bytes: u64,
    /// Threads issuing requests at once (the queue depth).
    #[arg(long, default_value_t = 1)]
    jobs: u64,
    /// Random offsets fall in the first this many bytes (default: the whole device).
    #[arg(long)]
    span: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    if args.block_size == 0 || args.block_size % ALIGN != 0 {
        return Err(format!(
            "--block-size {} must be a positive multiple of {ALIGN}",
            args.block_size
        ));
    }
    let write = matches!(args.pattern, Pattern::SeqWrite | Pattern::RandWrite);
    let mut file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(&args.device)
        .map_err(|e| format!("opening {}: {e}", args.device.display()))?;
    let device_size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("sizing {}: {e}", args.device.display()))?;
    let span = args.span.unwrap_or(device_size).min(device_size);
    let block = args.block_size as u64;
    let blocks_in_span = span / block;
    let requests = args.bytes / block;
    if blocks_in_span == 0 || requests == 0 {
        return Err(format!(
            "nothing to do: {span} bytes of span and {} bytes to move in {block}-byte requests",
            args.bytes
        ));
    }

    let started = Instant::now();
    let jobs = args.jobs.max(1);
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|job| {
                let file = &file;
                let args = &args;
                scope.spawn(move || {
                    let mine = requests / jobs + u64::from(job < requests % jobs);
                    run_job(file, args, job, mine, blocks_in_span)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a job panicked".into())))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    let bytes = requests * block;
    println!(
        "pattern={:?} block={block} jobs={jobs} bytes={bytes} seconds={seconds:.3} mib_per_s={:.2} iops={:.0}",
        args.pattern,
        bytes as f64 / seconds / f64::from(1 << 20),
        requests as f64 / seconds
    );
    Ok(())
}

/// Issues `requests` requests of one job: sequential jobs each take their own stretch of the span,
/// random ones draw block numbers from a per-job seeded generator.
fn run_job(
    file: &File,
    args: &Args,
    job: u64,
    requests: u64,
    blocks_in_span: u64,
) -> Result<(), String> {
    let block = args.block_size;
    let mut backing = vec![0u8; block + ALIGN];
    let start = backing.as_ptr().align_offset(ALIGN);
    let buf = &mut backing[start..start + block];
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(job));
    rng.fill_bytes(buf);
    let first = job * (blocks_in_span / args.jobs.max(1));
    for i in 0..requests {
        let n = match args.pattern {
            Pattern::SeqRead | Pattern::SeqWrite => (first + i) % blocks_in_span,
            Pattern::RandRead | Pattern::RandWrite => rng.random_range(0..blocks_in_span),
        };
        let offset = n * block as u64;
        let done = match args.pattern {
            Pattern::SeqRead | Pattern::RandRead => file.read_exact_at(buf, offset),
            Pattern::SeqWrite | Pattern::RandWrite => file.write_all_at(buf, offset),
        };
        done.map_err(|e| format!("{:?} at offset {offset}: {e}", args.pattern))?;
    }
    Ok(())
}
