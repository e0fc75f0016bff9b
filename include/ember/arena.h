/* Bump allocators. Parameters and optimizer state live in a long-lived arena owned by
 * their model or optimizer; activations, tape nodes and gradients of one training step
 * live in the step arena, which is reset after each step. Chunks are kept across
 * resets, so a steady-state step never calls malloc. */
#ifndef EMBER_ARENA_H
#define EMBER_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct em_arena em_arena;

#define EM_ALIGN 64

/* chunk_bytes: size of each backing chunk (0 picks a default). */
em_arena *em_arena_create(size_t chunk_bytes);
void em_arena_destroy(em_arena *arena);

/* 64-byte aligned, uninitialised. NULL and an error on allocation failure. */
void *em_arena_alloc(em_arena *arena, size_t bytes);
/* Zero-filled. */
void *em_arena_calloc(em_arena *arena, size_t count, size_t size);
/* Copies a string into the arena. */
char *em_arena_strdup(em_arena *arena, const char *s);

/* Forgets every allocation; keeps the chunks for reuse (merging them into one
 * chunk large enough for the peak, so that the next step fits in one). */
void em_arena_reset(em_arena *arena);

size_t em_arena_used(const em_arena *arena);     /* bytes handed out since reset */
size_t em_arena_reserved(const em_arena *arena); /* bytes held from the system */
/* How many times this arena asked the system for memory (to prove steady state). */
size_t em_arena_system_allocs(const em_arena *arena);

/* Test hook: after `n` more successful allocations (em_arena_create, and each
 * em_arena_alloc, _calloc or _strdup, whether or not it needs memory from the system),
 * by any arena on any thread, the next one and every later one fail as if malloc had
 * returned NULL. n < 0 disables the injection. Returns how many allocations the
 * previous setting made fail (so that a test can tell whether a run reached the
 * failure point). */
long em_arena_inject_failure_after(long n);

#ifdef __cplusplus
}
#endif
#endif
