// ThreadSanitizer annotations for happens-before edges TSan cannot see. A build without TSan turns each
// macro into nothing; with TSan (RINGHUB_TSAN, preset tsan) they call the runtime's release/acquire.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define RINGHUB_TSAN_ENABLED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RINGHUB_TSAN_ENABLED 1
#endif
#endif

#ifdef RINGHUB_TSAN_ENABLED
extern "C" {
void __tsan_acquire(void* addr);  // NOLINT(bugprone-reserved-identifier): the TSan runtime's own names
void __tsan_release(void* addr);  // NOLINT(bugprone-reserved-identifier)
}
// Everything this thread wrote before is visible to a thread that later acquires `addr`.
#define RINGHUB_TSAN_RELEASE(addr) __tsan_release(static_cast<void*>(addr))
// Pairs with the RINGHUB_TSAN_RELEASE of the same address on the sending thread.
#define RINGHUB_TSAN_ACQUIRE(addr) __tsan_acquire(static_cast<void*>(addr))
#else
#define RINGHUB_TSAN_RELEASE(addr) static_cast<void>(addr)
#define RINGHUB_TSAN_ACQUIRE(addr) static_cast<void>(addr)
#endif
