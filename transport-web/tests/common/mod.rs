//! Helpers shared by the browser test files (each includes this with `mod common;`).

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

/// Wait `ms` milliseconds (the global `setTimeout`, in a page or a worker).
pub async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let set_timeout: js_sys::Function =
            js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout"))
                .expect("setTimeout")
                .into();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &JsValue::from(ms))
            .expect("setTimeout");
    });
    JsFuture::from(promise).await.expect("setTimeout resolves");
}
