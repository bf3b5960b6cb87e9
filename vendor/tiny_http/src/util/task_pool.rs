use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads
    todo: Mutex<VecDeque<Box<dyn FnMut() + Send>>>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,

    // number of idle worker threads
    waiting_tasks: AtomicUsize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(VecDeque::new()),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
                waiting_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            let _ = pool.add_thread(None);
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) {
        let mut queue = self.sharing.todo.lock().unwrap();

        // llm-relay patch: upstream queued the task whenever any thread was waiting, so a burst
        // of connections queued behind the few idle threads, each of which then served one
        // keep-alive connection for its whole life while the rest waited. Queue a task only
        // while idle threads outnumber the queued tasks (both counted under this lock).
        if self.sharing.waiting_tasks.load(Ordering::Acquire) <= queue.len() {
            // llm-relay patch: a thread that cannot be started (EAGAIN) leaves the task queued
            // for the next free thread instead of panicking the accept thread.
            if let Err(code) = self.add_thread(Some(code)) {
                if let Some(code) = code {
                    queue.push_back(code);
                }
            }
        } else {
            queue.push_back(code);
            // llm-relay patch: wake the thread after the lock is released; woken under it, the
            // thread ran only to block on the lock again (two more futex calls and a context
            // switch per task; issue 19).
            drop(queue);
            self.sharing.condvar.notify_one();
        }
    }

    /// Starts a thread that runs `initial_fn` first; gives `initial_fn` back if no thread could
    /// be started (llm-relay patch: upstream panicked).
    fn add_thread(
        &self,
        initial_fn: Option<Box<dyn FnMut() + Send>>,
    ) -> Result<(), Option<Box<dyn FnMut() + Send>>> {
        let sharing = self.sharing.clone();
        let task = Arc::new(Mutex::new(initial_fn));
        let task_inside = task.clone();

        let started = thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let initial_fn = task_inside.lock().ok().and_then(|mut t| t.take());
                let sharing = sharing;
                let _active_guard = Registration::new(&sharing.active_tasks);

                if let Some(mut f) = initial_fn {
                    f();
                }

                loop {
                    let mut task: Box<dyn FnMut() + Send> = {
                        let mut todo = sharing.todo.lock().unwrap();

                        let task;
                        loop {
                            if let Some(poped_task) = todo.pop_front() {
                                task = poped_task;
                                break;
                            }
                            let _waiting_guard = Registration::new(&sharing.waiting_tasks);

                            let received =
                                if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                    todo = sharing.condvar.wait(todo).unwrap();
                                    true
                                } else {
                                    let (new_lock, waitres) = sharing
                                        .condvar
                                        .wait_timeout(todo, Duration::from_millis(5000))
                                        .unwrap();
                                    todo = new_lock;
                                    !waitres.timed_out()
                                };

                            if !received && todo.is_empty() {
                                return;
                            }
                        }

                        task
                    };

                    task();
                }
            });
        match started {
            Ok(_) => Ok(()),
            Err(e) => {
                log::warn!("cannot start a connection thread: {}", e);
                Err(task.lock().ok().and_then(|mut t| t.take()))
            }
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
