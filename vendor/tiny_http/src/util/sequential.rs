use std::io::Result as IoResult;
use std::io::{BufRead, Read, Write};

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::mem;

// mxisd patch: the turn passes from one request to the next through a `Baton`, a one-shot
// slot. The published version made two std mpsc channels per request; a channel carrying a
// reader allocates a block of 31 readers (about 2 KiB) that glibc consolidates on every free,
// and its receive parks through a waker: together about a tenth of a request's CPU time.
struct Baton<T> {
    state: Mutex<BatonState<T>>,
    passed: Condvar,
}

struct BatonState<T> {
    value: Option<T>,
    /// Whether a thread waits in `take`: only then does `pass` make a wake-up call.
    waiting: bool,
}

impl<T> Baton<T> {
    fn new() -> Arc<Baton<T>> {
        Arc::new(Baton {
            state: Mutex::new(BatonState {
                value: None,
                waiting: false,
            }),
            passed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BatonState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pass(&self, value: T) {
        let mut state = self.lock();
        state.value = Some(value);
        let wake = state.waiting;
        drop(state);
        if wake {
            self.passed.notify_one();
        }
    }

    /// Blocks until the value is passed. Every holder of the other end passes it when
    /// dropped, so this cannot wait forever.
    fn take(&self) -> T {
        let mut state = self.lock();
        loop {
            if let Some(value) = state.value.take() {
                state.waiting = false;
                return value;
            }
            state.waiting = true;
            state = self.passed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Arc<Baton<R>>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Arc<Baton<R>>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Arc<Baton<R>>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Arc<Baton<()>>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Arc<Baton<()>>>,
    writer: Arc<Mutex<W>>,
    on_finish: Arc<Baton<()>>,
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let tx = Baton::new();
        let rx = tx.clone();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let tx = Baton::new();
        let rx = tx.clone();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut reader = match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => return reader.read(buf),
            SequentialReaderInner::Waiting(ref recv) => recv.take(),
            SequentialReaderInner::Empty => unreachable!(),
        };

        let result = reader.read(buf);
        self.inner = SequentialReaderInner::MyTurn(reader);
        result
    }
}

impl<R: Read + Send> SequentialReader<R> {
    /// mxisd patch: the reader, once it is this request's turn.
    fn turn(&mut self) -> &mut R {
        if let SequentialReaderInner::Waiting(ref recv) = self.inner {
            self.inner = SequentialReaderInner::MyTurn(recv.take());
        }
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader,
            _ => unreachable!(),
        }
    }
}

// mxisd patch: lets the connection read header lines a buffer at a time, not byte by byte.
impl<R: BufRead + Send> BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        self.turn().fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.turn().consume(amt)
    }
}

impl<W: Write + Send> SequentialWriter<W> {
    /// Waits until the previous response on this connection is written (once).
    fn wait_turn(&mut self) {
        if let Some(previous) = self.trigger.take() {
            previous.take();
        }
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.wait_turn();

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.wait_turn();

        self.writer.lock().unwrap().flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.pass(reader);
            }
            SequentialReaderInner::Waiting(recv) => {
                let reader = recv.take();
                self.next.pass(reader);
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.pass(());
    }
}
