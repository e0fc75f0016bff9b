/* No heap allocation inside a steady-state training step: once warm-up steps have grown
 * the step arena to a step's peak and started the thread pool and BLAS, further steps of
 * the CNN (W2's network, Adam), the LSTM language model (W3's, its state carried from
 * batch to batch) and a GPT with dropout (W4's structure, smaller; AdamW with gradient
 * clipping) call malloc, calloc, realloc or an aligned allocator not once, on any
 * thread, from ember's code or from the C library on its behalf; nor does a token
 * generated through the GPT's key/value cache, re-prefills included.
 *
 * What the OpenMP runtime and OpenBLAS allocate inside their own calls is theirs and is
 * reported, not failed: libgomp allocates a team for every parallel region that runs on
 * one thread (an `if` clause that is false, a region nested in another), and OpenBLAS's
 * threaded GEMM its job table per call.
 *
 * The test replaces glibc's allocator entry points with ones that count by caller and
 * forward to glibc's own (glibc supports replacing them in a program). AddressSanitizer
 * replaces them itself, so under it the steps run (its poisoned step arena watching them)
 * but nothing is counted, and the test says so; the normal build counts in every
 * `make test`. */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <string.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "testlib.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef COUNTS_ALLOCATIONS
#define COUNTS_ALLOCATIONS 1
#endif

static atomic_long allocations, foreign_allocations;
static atomic_bool counting;

#if COUNTS_ALLOCATIONS
/* The executable code of the OpenMP runtime (GCC's libgomp or LLVM's libomp) and of
 * OpenBLAS, whose own allocations are theirs. */
#define MAX_RANGES 16
static uintptr_t foreign_begin[MAX_RANGES], foreign_end[MAX_RANGES];
static int n_foreign;

static int note_foreign(struct dl_phdr_info *info, size_t size, void *user)
{
    (void)size;
    (void)user;
    static const char *const runtimes[] = {"libgomp", "libomp", "libopenblas"};
    bool runtime = false;
    for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++)
        runtime |= info->dlpi_name && strstr(info->dlpi_name, runtimes[i]) != NULL;
    if (!runtime)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && n_foreign < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            foreign_begin[n_foreign] = info->dlpi_addr + ph->p_vaddr;
            foreign_end[n_foreign++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        }
    }
    return 0;
}

static bool foreign(const void *caller)
{
    for (int i = 0; i < n_foreign; i++)
        if ((uintptr_t)caller >= foreign_begin[i] && (uintptr_t)caller < foreign_end[i])
            return true;
    return false;
}

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void __libc_free(void *p);

/* Counts one allocation of `caller` (the return address into whoever called malloc). */
static void count_call(const void *caller)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(foreign(caller) ? &foreign_allocations : &allocations, 1, memory_order_relaxed);
}
#define count_one() count_call(__builtin_return_address(0))

void *malloc(size_t size)
{
    count_one();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
    count_one();
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t size)
{
    count_one();
    return __libc_realloc(p, size);
}

void free(void *p) { __libc_free(p); }

void *memalign(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size)
{
    count_one();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    count_one();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    count_one();
    void *p = __libc_memalign(alignment, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
#endif

/* Runs `step` warm-up times uncounted, then `counted` times counted; the count. */
static long allocations_in(const char *what, int (*step)(void *), void *state, int warmup, int counted)
{
    for (int i = 0; i < warmup; i++)
        if (step(state) != EM_OK)
            return -1;
    atomic_store(&allocations, 0);
    atomic_store(&foreign_allocations, 0);
    atomic_store(&counting, true);
    int rc = EM_OK;
    for (int i = 0; i < counted && rc == EM_OK; i++)
        rc = step(state);
    atomic_store(&counting, false);
    if (rc == EM_OK)
        printf("%s, %d steps: %ld allocations by ember, %ld inside OpenMP and OpenBLAS\n", what, counted,
               atomic_load(&allocations), atomic_load(&foreign_allocations));
    return rc == EM_OK ? atomic_load(&allocations) : -1;
}

typedef struct image_run {
    em_model *model;
    em_optim *opt;
    em_tensor *x;
    int32_t labels[16];
} image_run;

static int image_step(void *state)
{
    image_run *r = state;
    em_tensor *loss = em_cross_entropy(em_forward(r->model, r->x), r->labels, 0.0f);
    if (!loss || em_backward(loss) != EM_OK)
        return EM_ERR;
    em_optim_step(r->opt);
    em_step_end();
    return EM_OK;
}

static void test_cnn(em_arena *arena)
{
    image_run r = {.model = em_model_load(test_path("models/cnn.ember"), 1)};
    CHECK_MSG(r.model != NULL, "%s", ember_last_error());
    if (!r.model)
        return;
    r.opt = em_optim_new(r.model, EM_OPTIM_ADAM, NULL);
    em_rng rng;
    em_rng_seed(&rng, 2);
    r.x = em_tensor_empty(arena, 4, (int64_t[]){16, 1, 28, 28});
    em_init_uniform(r.x, &rng, 0.0f, 1.0f);
    for (int i = 0; i < 16; i++)
        r.labels[i] = (int32_t)em_rng_below(&rng, 10);
    long n = allocations_in("cnn training", image_step, &r, 3, 5);
    CHECK_MSG(n == 0, "cnn: %ld allocations in 5 training steps (-1: a step failed: %s)", n, ember_last_error());
    em_optim_free(r.opt);
    em_model_free(r.model);
}

typedef struct token_run {
    em_model *model;
    em_optim *opt;
    double clip;
    int64_t batch, steps, vocab;
    int32_t *ids, *targets;
    em_rng rng;
} token_run;

static int token_step(void *state)
{
    token_run *r = state;
    for (int64_t i = 0; i < r->batch * r->steps; i++) {
        r->ids[i] = (int32_t)em_rng_below(&r->rng, (uint64_t)r->vocab);
        r->targets[i] = (int32_t)em_rng_below(&r->rng, (uint64_t)r->vocab);
    }
    em_tensor *logits = em_forward_tokens(r->model, r->ids, r->batch, r->steps);
    em_tensor *flat = logits ? em_reshape(logits, 2, (int64_t[]){r->batch * r->steps, logits->shape[2]}) : NULL;
    em_tensor *loss = em_cross_entropy(flat, r->targets, 0.0f);
    if (!loss || em_backward(loss) != EM_OK)
        return EM_ERR;
    if (r->clip > 0)
        em_optim_clip_grad_norm(r->opt, r->clip, 2.0);
    em_optim_step(r->opt);
    em_step_end();
    return EM_OK;
}

static void test_token_model(em_arena *arena, const char *what, em_model *m, em_optim_kind kind, double clip,
                             bool carry)
{
    CHECK_MSG(m != NULL, "%s: %s", what, ember_last_error());
    if (!m)
        return;
    token_run r = {.model = m, .opt = em_optim_new(m, kind, NULL), .clip = clip, .batch = 4, .steps = 32,
                   .vocab = em_model_vocab_size(m)};
    r.ids = em_arena_alloc(arena, (size_t)(r.batch * r.steps) * sizeof(int32_t));
    r.targets = em_arena_alloc(arena, (size_t)(r.batch * r.steps) * sizeof(int32_t));
    em_rng_seed(&r.rng, 3);
    em_model_set_carry(m, carry);
    long n = allocations_in(what, token_step, &r, 3, 5);
    CHECK_MSG(n == 0, "%s: %ld allocations in 5 training steps (-1: a step failed: %s)", what, n,
              ember_last_error());
    em_optim_free(r.opt);
}

typedef struct decode_run {
    em_gpt_decoder *decoder;
    float logits[256];
    int32_t next;
} decode_run;

static int decode_step(void *state)
{
    decode_run *r = state;
    if (em_gpt_decoder_push(r->decoder, r->next, r->logits) != EM_OK)
        return EM_ERR;
    r->next = (r->next * 31 + 7) % 256;
    return EM_OK;
}

static void test_gpt(em_arena *arena)
{
    em_model *m = em_model_parse("input 32\ngpt vocab=256 context=32 layers=2 heads=2 width=32 dropout=0.1\n",
                                 "test gpt", 4);
    test_token_model(arena, "gpt", m, EM_OPTIM_ADAMW, 1.0, false);
    if (!m)
        return;
    /* 40 tokens fill the 32-position context: the re-prefill is inside the count */
    em_model_set_training(m, false);
    decode_run r = {.decoder = em_gpt_decoder_new(m), .next = 1};
    CHECK(r.decoder != NULL);
    if (r.decoder) {
        long n = allocations_in("gpt generation", decode_step, &r, 2, 40);
        CHECK_MSG(n == 0, "gpt generation: %ld allocations in 40 tokens (-1: a step failed: %s)", n,
                  ember_last_error());
        CHECK(em_gpt_decoder_length(r.decoder) <= 32);
    }
    em_gpt_decoder_free(r.decoder);
    em_model_free(m);
}

int main(void)
{
#if COUNTS_ALLOCATIONS
    /* the counter must see this program's own calls (a pointer the compiler cannot drop),
     * and know OpenMP's and OpenBLAS's code */
    atomic_store(&counting, true);
    void *volatile probe = malloc(16);
    free(probe);
    atomic_store(&counting, false);
    CHECK_MSG(atomic_load(&allocations) == 1, "the replaced malloc counted %ld calls", atomic_load(&allocations));
    dl_iterate_phdr(note_foreign, NULL);
    CHECK_MSG(n_foreign >= 2, "found %d code ranges of libgomp and OpenBLAS", n_foreign);
#else
    /* the steps still run, under the sanitizer's eyes, but nothing counts them */
    printf("test_step_allocations: AddressSanitizer owns the allocator here; allocations are not counted\n");
#endif

    em_arena *arena = em_arena_create(0);
    test_cnn(arena);
    em_model *lstm = em_model_load(test_path("models/lstm.ember"), 1);
    test_token_model(arena, "lstm", lstm, EM_OPTIM_ADAM, 0.0, true);
    em_model_free(lstm);
    test_gpt(arena);
    em_arena_destroy(arena);
    return test_finish();
}
