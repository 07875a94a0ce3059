//! The handle a Python-facing object (the media engine, the load generator) keeps to the
//! thread that does its work: commands are queued on a channel and the thread is woken;
//! stopping sends the shutdown command and joins the thread — once, whether by `stop()` or
//! when the handle is dropped.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use crate::events::Notifier;

pub struct WorkerHandle<C: Send + 'static> {
    /// What the worker is, for error messages ("engine", "load generator").
    what: &'static str,
    commands: Mutex<Sender<C>>,
    wake: Arc<Notifier>,
    thread: Mutex<Option<JoinHandle<()>>>,
    shutdown: fn() -> C,
}

impl<C: Send + 'static> WorkerHandle<C> {
    /// Start `run` on a thread named `name`; `commands` feeds it, `wake` interrupts its wait,
    /// `shutdown` makes the command that ends it.
    pub fn spawn(what: &'static str, name: &str, commands: Sender<C>, wake: Arc<Notifier>, shutdown: fn() -> C,
                 run: impl FnOnce() + Send + 'static) -> PyResult<Self> {
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(WorkerHandle { what, commands: Mutex::new(commands), wake, thread: Mutex::new(Some(thread)), shutdown })
    }

    /// Queue a command and wake the worker; an error once the worker has stopped.
    pub fn send(&self, cmd: C) -> PyResult<()> {
        let sender = self.commands.lock().map_err(|_| PyRuntimeError::new_err(format!("{} lock poisoned", self.what)))?;
        sender.send(cmd).map_err(|_| PyRuntimeError::new_err(format!("{} is stopped", self.what)))?;
        self.wake.notify();
        Ok(())
    }

    fn take_thread(&self) -> Option<JoinHandle<()>> {
        if let Ok(sender) = self.commands.lock() {
            let _ = sender.send((self.shutdown)());
        }
        self.wake.notify();
        self.thread.lock().ok().and_then(|mut t| t.take())
    }

    /// Stop the worker and wait for it, without holding the GIL (idempotent).
    pub fn stop(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(thread) = self.take_thread() {
            py.detach(|| thread.join())
                .map_err(|_| PyRuntimeError::new_err(format!("{} worker panicked", self.what)))?;
        }
        Ok(())
    }
}

impl<C: Send + 'static> Drop for WorkerHandle<C> {
    fn drop(&mut self) {
        if let Some(thread) = self.take_thread() {
            let _ = thread.join();
        }
    }
}
