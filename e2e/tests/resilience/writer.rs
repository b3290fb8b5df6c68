//! The pod's writer: numbered 16 KiB blocks of random data written into a file on the volume with
//! O_DIRECT and fsync, each acknowledged (its number, the block it went to, its SHA-256 and the
//! guest's uptime) only once `dd` returned success, a failure recorded and the writer stopped.
//! Reading every acknowledged block back and comparing its checksum is the verification: a write
//! the kernel acknowledged and lost, or an error that reached the writer, fails the case.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::rig::{Rig, guest};

const BLOCK: u64 = 16 << 10;
/// Blocks in the file: more than a case writes, so no block is written twice and each
/// acknowledgement names the block's final contents.
const BLOCKS: u64 = 8192;

/// Writes until /tmp/w.stop appears: acknowledgements in /tmp/w.acks, the failure that stopped it
/// in /tmp/w.errors, /tmp/w.done when it has ended.
const SCRIPT: &str = r#"f=$1 i=0
while [ ! -e /tmp/w.stop ]; do
  if [ $i -ge BLOCKS ]; then echo "full after $i blocks" >/tmp/w.done; exit 0; fi
  head -c BLOCK /dev/urandom >/tmp/w.blk
  sum=$(sha256sum </tmp/w.blk); sum=${sum%% *}
  if dd if=/tmp/w.blk of=$f bs=BLOCK seek=$i count=1 oflag=direct conv=notrunc,fsync 2>/tmp/w.err; then
    read up _ </proc/uptime
    echo "$i $sum $up" >>/tmp/w.acks
  else
    read up _ </proc/uptime
    echo "block $i failed at uptime $up: $(cat /tmp/w.err)" >>/tmp/w.errors
    break
  fi
  i=$((i + 1))
  sleep 0.05
done
echo stopped >/tmp/w.done
"#;

/// Reads each acknowledged block of $1 back, bypassing the page cache; prints the mismatches.
const VERIFY: &str = r#"f=$1
while read i sum up; do
  got=$(dd if=$f bs=BLOCK skip=$i count=1 iflag=direct 2>/dev/null | sha256sum); got=${got%% *}
  [ "$got" = "$sum" ] || echo "block $i: acknowledged $sum, reads $got"
done </tmp/w.acks
"#;

/// One acknowledged write.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// The guest's uptime when `dd` returned, in seconds.
    pub at: f64,
}

pub struct Writer;

impl Writer {
    /// Starts the writer on `dir/blocks` in the guest.
    pub fn start(rig: &Rig, dir: &str) -> anyhow::Result<Writer> {
        let script = SCRIPT
            .replace("BLOCKS", &BLOCKS.to_string())
            .replace("BLOCK", &BLOCK.to_string());
        guest(
            rig,
            &format!(
                "cat >/tmp/writer.sh <<'EOF'\n{script}EOF\n\
                 rm -f /tmp/w.errors /tmp/w.stop /tmp/w.done; : >/tmp/w.acks\n\
                 sh /tmp/writer.sh {dir}/blocks </dev/null >/dev/null 2>&1 &"
            ),
        )?;
        let writer = Writer;
        writer.await_acks(rig, 0, Duration::from_secs(60))?;
        Ok(writer)
    }

    /// The acknowledgements so far.
    pub fn acks(&self, rig: &Rig) -> anyhow::Result<Vec<Ack>> {
        let text = guest(rig, "cat /tmp/w.acks")?;
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields[..] {
                    [_block, _sum, at] => Ok(Ack { at: at.parse()? }),
                    _ => bail!("a torn acknowledgement line {line:?}"),
                }
            })
            .collect()
    }

    /// What stopped the writer, if anything did.
    pub fn errors(&self, rig: &Rig) -> anyhow::Result<String> {
        guest(rig, "cat /tmp/w.errors 2>/dev/null; true")
    }

    /// Waits until more than `count` writes are acknowledged; fails early if the writer stopped.
    pub fn await_acks(&self, rig: &Rig, count: usize, limit: Duration) -> anyhow::Result<Vec<Ack>> {
        self.await_until(rig, limit, |acks| acks.len() > count)
            .with_context(|| format!("awaiting more than {count} acknowledged writes"))
    }

    /// Waits until a write is acknowledged at or after the guest's uptime `since`; returns the
    /// first such acknowledgement.
    pub fn await_ack_after(&self, rig: &Rig, since: f64, limit: Duration) -> anyhow::Result<Ack> {
        let acks = self
            .await_until(rig, limit, |acks| acks.iter().any(|ack| ack.at >= since))
            .with_context(|| format!("awaiting a write acknowledged after uptime {since}"))?;
        Ok(*acks.iter().find(|ack| ack.at >= since).expect("awaited"))
    }

    fn await_until(
        &self,
        rig: &Rig,
        limit: Duration,
        done: impl Fn(&[Ack]) -> bool,
    ) -> anyhow::Result<Vec<Ack>> {
        let deadline = Instant::now() + limit;
        loop {
            let acks = self.acks(rig)?;
            if done(&acks) {
                return Ok(acks);
            }
            let errors = self.errors(rig)?;
            ensure!(errors.is_empty(), "the writer failed: {errors}");
            let ended = guest(rig, "cat /tmp/w.done 2>/dev/null; true")?;
            ensure!(ended.is_empty(), "the writer ended: {ended}");
            ensure!(
                Instant::now() < deadline,
                "nothing within {limit:?}\n{}",
                rig.plugin.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the writer and waits until it has ended.
    pub fn stop(&self, rig: &Rig) -> anyhow::Result<()> {
        guest(
            rig,
            "touch /tmp/w.stop
             for i in $(seq 600); do [ -e /tmp/w.done ] && exit 0; sleep 0.1; done
             echo 'the writer did not stop' >&2; exit 1",
        )
        .map(drop)
    }

    /// Reads every acknowledged block of the file under `dir` (the writer's, or the same volume
    /// published again) and compares it with what was acknowledged.
    pub fn verify(&self, rig: &Rig, dir: &str) -> anyhow::Result<usize> {
        let acks = self.acks(rig)?.len();
        let file = format!("{dir}/blocks");
        let script = VERIFY.replace("BLOCK", &BLOCK.to_string());
        let mismatches = guest(
            rig,
            &format!("echo 3 >/proc/sys/vm/drop_caches\ncat >/tmp/verify.sh <<'EOF'\n{script}EOF\nsh /tmp/verify.sh {file}"),
        )
        .context("reading the acknowledged blocks back")?;
        ensure!(
            mismatches.is_empty(),
            "acknowledged writes read back different from {file}:\n{mismatches}"
        );
        Ok(acks)
    }
}

/// The guest's uptime now, in seconds: the clock of the writer's acknowledgements.
pub fn uptime(rig: &Rig) -> anyhow::Result<f64> {
    let text = guest(rig, "read up _ </proc/uptime; echo $up")?;
    text.trim()
        .parse()
        .with_context(|| format!("the guest's uptime {text:?}"))
}
