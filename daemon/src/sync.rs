//! Locks that keep serving after a panic elsewhere. What they guard (counters, caches, the latest sample) is
//! consistent between statements, so a lock poisoned by a panicking thread is taken as it is, one way
//! everywhere, instead of spreading the panic to every request that touches it.
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub trait MutexExt<T> {
    /// `lock()`, taking a poisoned lock as it is.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub trait RwLockExt<T> {
    /// `read()`, taking a poisoned lock as it is.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// `write()`, taking a poisoned lock as it is.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_still_served() {
        let shared = Arc::new((Mutex::new(1), RwLock::new(2)));
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let _mutex = poisoner.0.lock();
            let _rw = poisoner.1.write();
            panic!("poison both");
        })
        .join();
        assert!(shared.0.is_poisoned() && shared.1.is_poisoned());
        *shared.0.locked() += 1;
        *shared.1.write_locked() += 1;
        assert_eq!((*shared.0.locked(), *shared.1.read_locked()), (2, 3));
    }
}
