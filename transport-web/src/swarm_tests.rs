use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Wake;
use wasm_bindgen_test::wasm_bindgen_test;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn recv(d: &mut MessageDuplex) -> Poll<Option<Vec<u8>>> {
    d.poll_recv(&mut Context::from_waker(Waker::noop()))
}

/// The pump stops reading while the inbox holds `HIGH_WATER` bytes or more; reading the
/// inbox below it must wake the pump (once), or a full connection would stall for good.
#[wasm_bindgen_test]
fn reading_a_full_inbox_below_the_high_water_mark_wakes_the_pump() {
    let conn: ConnRef = Rc::default();
    let half = HIGH_WATER / 2;
    let count = Arc::new(Count::default());
    {
        let mut c = conn.borrow_mut();
        for m in [vec![1; 10], vec![2; half], vec![3; half]] {
            c.inbox_bytes += m.len();
            c.inbox.push_back(m);
        }
        c.pump_waker = Some(Waker::from(count.clone()));
    }
    let mut d = MessageDuplex(conn.clone());
    assert_eq!(recv(&mut d), Poll::Ready(Some(vec![1; 10])));
    assert_eq!(conn.borrow().inbox_bytes, HIGH_WATER);
    assert_eq!(count.0.load(Ordering::Relaxed), 0, "still at the mark");
    assert_eq!(recv(&mut d), Poll::Ready(Some(vec![2; half])));
    assert_eq!(conn.borrow().inbox_bytes, half);
    assert_eq!(
        count.0.load(Ordering::Relaxed),
        1,
        "below the mark: the pump reads again"
    );
    assert_eq!(recv(&mut d), Poll::Ready(Some(vec![3; half])));
    assert_eq!(conn.borrow().inbox_bytes, 0);
    assert_eq!(count.0.load(Ordering::Relaxed), 1);
    assert_eq!(recv(&mut d), Poll::Pending);
}
