#include "ember/arena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ember/error.h"

/* Under AddressSanitizer the bytes of a chunk that are not handed out (never yet, or no
 * longer since a reset) are poisoned, so that a tensor used after the step that made it
 * ended (em_step_end resets the step arena), or an access past the end of a block into
 * the chunk's free space, is reported where it happens instead of reading whatever the
 * next step wrote there. */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_POISONS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_POISONS 1
#endif
#endif
#ifdef ARENA_POISONS
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct chunk {
    struct chunk *next;
    size_t capacity;
    size_t used;
    /* Bytes from here on were never handed out: still zero, as calloc gave them (fresh
     * pages from the system cost nothing until touched, so em_arena_calloc leaves them
     * alone: a model's gradient buffers are never touched when it only predicts). */
    size_t untouched;
    unsigned char *base; /* aligned start of the usable bytes */
} chunk;

struct em_arena {
    chunk *head;          /* chunk being filled */
    size_t chunk_bytes;
    size_t used;          /* since reset, over all chunks */
    size_t reserved;
    size_t system_allocs;
};

#define DEFAULT_CHUNK ((size_t)1 << 20)

static long failure_countdown = -1;
static long injected_failures;

long em_arena_inject_failure_after(long n)
{
    long failed = injected_failures;
    injected_failures = 0;
    failure_countdown = n;
    return failed;
}

/* True when the injected failure is due for this request. */
static bool injected_failure(void)
{
    if (failure_countdown < 0)
        return false;
    if (failure_countdown == 0) {
        injected_failures++;
        return true;
    }
    failure_countdown--;
    return false;
}

static chunk *chunk_new(em_arena *a, size_t min_bytes)
{
    size_t capacity = a->chunk_bytes > min_bytes ? a->chunk_bytes : min_bytes;
    if (capacity > SIZE_MAX - sizeof(chunk) - EM_ALIGN)
        return NULL;
    chunk *c = calloc(1, sizeof(chunk) + capacity + EM_ALIGN);
    if (!c)
        return NULL;
    uintptr_t start = (uintptr_t)(c + 1);
    start = (start + EM_ALIGN - 1) & ~(uintptr_t)(EM_ALIGN - 1);
    c->base = (unsigned char *)start;
    c->capacity = capacity;
    c->used = 0;
    c->untouched = 0;
    c->next = NULL;
    POISON(c->base, capacity);
    a->reserved += capacity;
    a->system_allocs++;
    return c;
}

em_arena *em_arena_create(size_t chunk_bytes)
{
    em_arena *a = injected_failure() ? NULL : malloc(sizeof *a);
    if (!a) {
        em_error("out of memory creating an arena");
        return NULL;
    }
    memset(a, 0, sizeof *a);
    a->chunk_bytes = chunk_bytes ? chunk_bytes : DEFAULT_CHUNK;
    return a;
}

void em_arena_destroy(em_arena *a)
{
    if (!a)
        return;
    for (chunk *c = a->head; c;) {
        chunk *next = c->next;
        UNPOISON(c->base, c->capacity);
        free(c);
        c = next;
    }
    free(a);
}

/* em_arena_alloc; *dirty gets how many leading bytes of the block may be non-zero (the
 * rest is untouched zeroed memory). */
static void *arena_alloc(em_arena *a, size_t bytes, size_t *dirty)
{
    if (!a) {
        /* The arena itself could not be created (em_step_arena() after malloc failed). */
        em_error("out of memory: no arena to allocate %zu bytes from", bytes);
        return NULL;
    }
    size_t rounded = (bytes + EM_ALIGN - 1) & ~(size_t)(EM_ALIGN - 1);
    if (rounded < bytes) {
        em_error("allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    if (rounded == 0)
        rounded = EM_ALIGN;
    if (injected_failure()) {
        em_error("out of memory: could not allocate %zu bytes", bytes);
        return NULL;
    }
    chunk *c = a->head;
    if (!c || c->capacity - c->used < rounded) {
        /* Later chunks (kept from before a reset) may have room. */
        chunk *spare = c ? c->next : NULL;
        if (spare && spare->used == 0 && spare->capacity >= rounded) {
            c->next = spare->next;
            spare->next = c;
            a->head = spare;
            c = spare;
        } else {
            chunk *fresh = chunk_new(a, rounded);
            if (!fresh) {
                em_error("out of memory: could not allocate %zu bytes", bytes);
                return NULL;
            }
            fresh->next = c;
            a->head = fresh;
            c = fresh;
        }
    }
    void *p = c->base + c->used;
    UNPOISON(p, rounded);
    *dirty = c->untouched > c->used ? c->untouched - c->used : 0;
    c->used += rounded;
    if (c->untouched < c->used)
        c->untouched = c->used;
    a->used += rounded;
    return p;
}

void *em_arena_alloc(em_arena *a, size_t bytes)
{
    size_t dirty;
    return arena_alloc(a, bytes, &dirty);
}

void *em_arena_calloc(em_arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        em_error("allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    size_t bytes = count * size, dirty = 0;
    void *p = arena_alloc(a, bytes, &dirty);
    if (p && dirty)
        memset(p, 0, dirty < bytes ? dirty : bytes);
    return p;
}

char *em_arena_strdup(em_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = em_arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void em_arena_reset(em_arena *a)
{
    if (!a || !a->head)
        return;
    /* Several chunks mean the last step outgrew the first one: replace them all by one
     * chunk that holds the peak, so that steady-state steps need no new chunk. */
    if (a->head->next) {
        size_t peak = a->used > a->reserved ? a->used : a->reserved;
        for (chunk *c = a->head; c;) {
            chunk *next = c->next;
            UNPOISON(c->base, c->capacity);
            free(c);
            c = next;
        }
        a->head = NULL;
        a->reserved = 0;
        size_t saved = a->chunk_bytes;
        a->chunk_bytes = peak;
        a->head = chunk_new(a, peak); /* on failure the next alloc retries small */
        a->chunk_bytes = saved > peak ? saved : peak;
    } else {
        POISON(a->head->base, a->head->used);
        a->head->used = 0;
    }
    a->used = 0;
}

size_t em_arena_used(const em_arena *a) { return a ? a->used : 0; }
size_t em_arena_reserved(const em_arena *a) { return a ? a->reserved : 0; }
size_t em_arena_system_allocs(const em_arena *a) { return a ? a->system_allocs : 0; }
