//! The status LED: solid when online, slow blink while working, fast blink
//! on error, off when disabled or unconfigured (and when the daemon stops).
//!
//! [`StatusLed`] switches one LED on or off; [`drive`] turns the daemon's
//! state into a blink pattern on it. Implementations: a kernel LED under
//! `/sys/class/leds/<name>/` ([`SysfsLed`]), a GPIO pin through rppal
//! (`GpioLed`, feature `gpio`), and none ([`NoLed`]). An LED that cannot be
//! opened at start is a warning in the log and the daemon runs without it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{LedConfig, LedKind};
use crate::status::{Phase, Status};

/// Half-period of the slow blink ("working"): on for a second, off for a
/// second, calm enough to read as "busy, not broken".
pub const SLOW_HALF_PERIOD: Duration = Duration::from_millis(1000);
/// Half-period of the fast blink ("error"): 4 toggles a second, clearly
/// different from the slow blink at a glance.
pub const FAST_HALF_PERIOD: Duration = Duration::from_millis(125);

/// Why the LED cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedError {
    /// A sysfs file could not be written.
    #[error("LED {path}: {source}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The GPIO pin could not be opened or driven.
    #[error("GPIO pin {pin}: {detail}")]
    Gpio {
        /// BCM pin number.
        pin: u8,
        /// What went wrong.
        detail: String,
    },
}

/// One LED that is on or off.
pub trait StatusLed: Send {
    /// Switches the LED.
    fn set(&mut self, on: bool) -> Result<(), LedError>;
}

/// What the LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Dark.
    Off,
    /// Always on.
    Solid,
    /// [`SLOW_HALF_PERIOD`] on, then off.
    SlowBlink,
    /// [`FAST_HALF_PERIOD`] on, then off.
    FastBlink,
}

impl Pattern {
    /// The pattern for a state.
    pub fn for_phase(phase: Phase) -> Pattern {
        match phase {
            Phase::Online => Pattern::Solid,
            Phase::Working => Pattern::SlowBlink,
            Phase::Error => Pattern::FastBlink,
            Phase::Disabled | Phase::Unconfigured => Pattern::Off,
        }
    }

    fn half_period(self) -> Option<Duration> {
        match self {
            Pattern::SlowBlink => Some(SLOW_HALF_PERIOD),
            Pattern::FastBlink => Some(FAST_HALF_PERIOD),
            Pattern::Off | Pattern::Solid => None,
        }
    }
}

/// Drives `led` from the status until `shutdown`, then turns it off.
/// Errors writing the LED are logged once per run of failures, never fatal.
pub async fn drive(
    mut led: Box<dyn StatusLed>,
    mut status: watch::Receiver<Status>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut failing = false;
    let mut set = |led: &mut Box<dyn StatusLed>, on: bool| match led.set(on) {
        Ok(()) => failing = false,
        Err(e) => {
            if !failing {
                tracing::warn!(error = %e, "cannot switch the status LED");
            }
            failing = true;
        }
    };
    let mut pattern = Pattern::for_phase(status.borrow_and_update().state);
    let mut on = pattern != Pattern::Off;
    set(&mut led, on);
    let mut status_open = true;
    // When the LED toggles next; kept across status changes that keep the
    // pattern, so the blink stays even.
    let mut next_toggle = pattern.half_period().map(|d| Instant::now() + d);
    loop {
        let toggle = async {
            match next_toggle {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            _ = toggle => {
                on = !on;
                set(&mut led, on);
                next_toggle = pattern.half_period().map(|d| Instant::now() + d);
            }
            changed = status.changed(), if status_open => {
                if changed.is_err() {
                    status_open = false;
                    continue;
                }
                let new = Pattern::for_phase(status.borrow_and_update().state);
                if new != pattern {
                    pattern = new;
                    // Each pattern starts with the LED on (except off), so
                    // a change is visible at once.
                    on = pattern != Pattern::Off;
                    set(&mut led, on);
                    next_toggle = pattern.half_period().map(|d| Instant::now() + d);
                }
            }
        }
    }
    set(&mut led, false);
}

/// No LED.
#[derive(Debug, Default)]
pub struct NoLed;

impl StatusLed for NoLed {
    fn set(&mut self, _on: bool) -> Result<(), LedError> {
        Ok(())
    }
}

/// A kernel LED: `<root>/<name>/brightness`, after setting its trigger to
/// `none` so the kernel's own use of it (e.g. SD card activity) stops.
#[derive(Debug)]
pub struct SysfsLed {
    /// `<root>/<name>/brightness`.
    brightness: PathBuf,
    /// What "on" writes: the LED's `max_brightness`, or 1.
    on_value: String,
}

impl SysfsLed {
    /// Opens `<root>/<name>`: sets the trigger to `none` (a failure there is
    /// only logged) and checks that brightness can be written.
    pub fn open(root: &Path, name: &str) -> Result<SysfsLed, LedError> {
        let dir = root.join(name);
        let trigger = dir.join("trigger");
        if let Err(e) = std::fs::write(&trigger, "none") {
            tracing::warn!(path = %trigger.display(), error = %e, "cannot take over the LED's trigger");
        }
        let on_value = std::fs::read_to_string(dir.join("max_brightness"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.parse::<u32>().is_ok_and(|n| n > 0))
            .unwrap_or_else(|| "1".to_string());
        let mut led = SysfsLed {
            brightness: dir.join("brightness"),
            on_value,
        };
        led.set(false)?;
        Ok(led)
    }
}

impl StatusLed for SysfsLed {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        let value = if on { self.on_value.as_str() } else { "0" };
        std::fs::write(&self.brightness, value).map_err(|source| LedError::Sysfs {
            path: self.brightness.clone(),
            source,
        })
    }
}

/// A GPIO pin (BCM numbering) driven high for on.
#[cfg(feature = "gpio")]
pub struct GpioLed {
    /// The pin, configured as an output.
    pin: rppal::gpio::OutputPin,
}

#[cfg(feature = "gpio")]
impl GpioLed {
    /// Opens BCM pin `pin` as an output, low.
    pub fn open(pin: u8) -> Result<GpioLed, LedError> {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| LedError::Gpio {
            pin,
            detail: e.to_string(),
        })?;
        let out = gpio
            .get(pin)
            .map_err(|e| LedError::Gpio {
                pin,
                detail: e.to_string(),
            })?
            .into_output_low();
        Ok(GpioLed { pin: out })
    }
}

#[cfg(feature = "gpio")]
impl StatusLed for GpioLed {
    fn set(&mut self, on: bool) -> Result<(), LedError> {
        if on {
            self.pin.set_high();
        } else {
            self.pin.set_low();
        }
        Ok(())
    }
}

/// The LED the config asks for; one that cannot be opened is logged as a
/// warning and replaced by [`NoLed`].
pub fn open(config: &LedConfig) -> Box<dyn StatusLed> {
    let opened: Result<Box<dyn StatusLed>, LedError> = match config.kind {
        LedKind::None => Ok(Box::new(NoLed)),
        LedKind::Sysfs => SysfsLed::open(&config.sysfs_root, &config.sysfs_name)
            .map(|l| Box::new(l) as Box<dyn StatusLed>),
        #[cfg(feature = "gpio")]
        LedKind::Gpio => GpioLed::open(config.gpio_pin).map(|l| Box::new(l) as Box<dyn StatusLed>),
        #[cfg(not(feature = "gpio"))]
        LedKind::Gpio => Err(LedError::Gpio {
            pin: config.gpio_pin,
            detail: "this build has no GPIO support (built without the `gpio` feature)".into(),
        }),
    };
    opened.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "running without a status LED");
        Box::new(NoLed)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::{sleep, Instant};

    use super::*;
    use crate::fakes::lock;

    /// Records each switch with its time (ms since the start).
    struct Recording {
        start: Instant,
        log: Arc<Mutex<Vec<(u64, bool)>>>,
    }

    impl StatusLed for Recording {
        fn set(&mut self, on: bool) -> Result<(), LedError> {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            lock(&self.log).push((ms, on));
            Ok(())
        }
    }

    fn status(phase: Phase) -> Status {
        Status {
            state: phase,
            ..Status::default()
        }
    }

    /// Online is solid, working blinks at 1 s, error at 125 ms, disabled is
    /// off, and stopping turns the LED off.
    #[tokio::test(start_paused = true)]
    async fn patterns_follow_the_state() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let led = Recording {
            start: Instant::now(),
            log: log.clone(),
        };
        let (tx, rx) = watch::channel(status(Phase::Online));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(drive(Box::new(led), rx, async {
            let _ = stop_rx.await;
        }));
        sleep(Duration::from_millis(5000)).await;
        assert_eq!(
            *lock(&log),
            vec![(0, true)],
            "solid: one switch, no blinking"
        );

        tx.send_replace(status(Phase::Working));
        sleep(Duration::from_millis(3500)).await;
        let working: Vec<_> = lock(&log)[1..].to_vec();
        assert_eq!(
            working,
            vec![(5000, true), (6000, false), (7000, true), (8000, false)]
        );

        lock(&log).clear();
        tx.send_replace(status(Phase::Error));
        sleep(Duration::from_millis(510)).await;
        assert_eq!(
            *lock(&log),
            vec![
                (8500, true),
                (8625, false),
                (8750, true),
                (8875, false),
                (9000, true)
            ]
        );

        lock(&log).clear();
        tx.send_replace(status(Phase::Disabled));
        sleep(Duration::from_millis(5000)).await;
        assert_eq!(*lock(&log), vec![(9010, false)]);

        lock(&log).clear();
        tx.send_replace(status(Phase::Online));
        sleep(Duration::from_millis(10)).await;
        let _ = stop_tx.send(());
        task.await.expect("led task");
        assert_eq!(*lock(&log), vec![(14010, true), (14020, false)]);
    }

    /// A status change that keeps the pattern does not restart the blink.
    #[tokio::test(start_paused = true)]
    async fn same_pattern_does_not_restart() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let led = Recording {
            start: Instant::now(),
            log: log.clone(),
        };
        let (tx, rx) = watch::channel(status(Phase::Working));
        let task = tokio::spawn(drive(Box::new(led), rx, sleep(Duration::from_millis(2500))));
        sleep(Duration::from_millis(500)).await;
        tx.send_modify(|s| s.checks += 1);
        task.await.expect("led task");
        assert_eq!(
            *lock(&log),
            vec![(0, true), (1000, false), (2000, true), (2500, false)]
        );
    }

    #[test]
    fn sysfs_led_writes_brightness_and_takes_the_trigger() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("led0");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("trigger"), "mmc0").expect("write");
        std::fs::write(dir.join("max_brightness"), "255\n").expect("write");
        std::fs::write(dir.join("brightness"), "0").expect("write");
        let mut led = SysfsLed::open(root.path(), "led0").expect("open");
        assert_eq!(
            std::fs::read_to_string(dir.join("trigger")).expect("read"),
            "none"
        );
        led.set(true).expect("on");
        assert_eq!(
            std::fs::read_to_string(dir.join("brightness")).expect("read"),
            "255"
        );
        led.set(false).expect("off");
        assert_eq!(
            std::fs::read_to_string(dir.join("brightness")).expect("read"),
            "0"
        );
    }

    #[test]
    fn a_missing_led_falls_back_to_none() {
        let root = tempfile::tempdir().expect("tempdir");
        let config = LedConfig {
            kind: LedKind::Sysfs,
            sysfs_root: root.path().to_path_buf(),
            ..LedConfig::default()
        };
        // No panic, no error: a warning and an LED that does nothing.
        let mut led = open(&config);
        assert!(led.set(true).is_ok());
        assert!(SysfsLed::open(root.path(), "led0").is_err());
    }
}
