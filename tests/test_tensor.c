/* Arenas, tensor creation and inspection, seeded random numbers and initialisers. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

static void test_arena(void)
{
    em_arena *a = em_arena_create(4096);
    void *p = em_arena_alloc(a, 10);
    void *q = em_arena_alloc(a, 10);
    CHECK(p && q && ((uintptr_t)p % EM_ALIGN) == 0 && ((uintptr_t)q % EM_ALIGN) == 0 && p != q);
    /* Outgrow the chunk, reset, and the next round of the same size needs no system memory. */
    for (int i = 0; i < 100; i++)
        CHECK(em_arena_alloc(a, 1000) != NULL);
    size_t allocs = em_arena_system_allocs(a);
    CHECK(allocs > 1);
    em_arena_reset(a);
    size_t after_reset = em_arena_system_allocs(a);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 102; i++)
            CHECK(em_arena_alloc(a, 1000) != NULL);
        em_arena_reset(a);
    }
    CHECK_MSG(em_arena_system_allocs(a) == after_reset, "steady state allocated %zu more chunks",
              em_arena_system_allocs(a) - after_reset);
    int *z = em_arena_calloc(a, 100, sizeof(int));
    int zero = 1;
    for (int i = 0; i < 100; i++)
        zero &= z[i] == 0;
    CHECK(zero);
    CHECK(em_arena_calloc(a, SIZE_MAX / 2, 4) == NULL);
    CHECK_ERROR_CONTAINS("overflows");
    em_arena_destroy(a);

    /* Allocation failure is an error value, not a crash. */
    em_arena *b = em_arena_create(1024);
    em_arena_inject_failure_after(0);
    em_clear_error();
    CHECK(em_arena_alloc(b, 4096) == NULL);
    CHECK_ERROR_CONTAINS("out of memory");
    em_arena_inject_failure_after(-1);
    CHECK(em_arena_alloc(b, 4096) != NULL);
    em_arena_destroy(b);
}

static void test_creation_and_shapes(void)
{
    em_tensor *t = em_tensor_zeros(NULL, 3, (int64_t[]){2, 3, 4});
    CHECK(t && t->numel == 24 && t->stride[0] == 12 && t->stride[2] == 1 && em_is_contiguous(t));
    CHECK(strcmp(em_shape_str(t), "[2, 3, 4]") == 0);
    em_tensor *s = em_tensor_scalar(NULL, 3.5f);
    CHECK(s && s->ndim == 0 && s->numel == 1 && em_item(s) == 3.5f);
    em_clear_error();
    CHECK(em_tensor_zeros(NULL, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}) == NULL);
    CHECK_ERROR_CONTAINS("7 dimensions");
    CHECK(em_tensor_zeros(NULL, 2, (int64_t[]){3, 0}) == NULL);
    CHECK_ERROR_CONTAINS("must be positive");
    CHECK(em_tensor_zeros(NULL, 3, (int64_t[]){INT64_MAX / 2, 4, 4}) == NULL);
    CHECK_ERROR_CONTAINS("too many elements");
    em_tensor *six = em_tensor_full(NULL, 6, (int64_t[]){1, 2, 1, 2, 1, 2}, 2.0f);
    CHECK(six && six->numel == 8 && six->data[7] == 2.0f);

    float values[6] = {1, 2, 3, 4, 5, 6};
    em_tensor *m = em_tensor_from(NULL, 2, (int64_t[]){2, 3}, values);
    em_tensor *mt = em_transpose(m, 0, 1);
    float dense[6];
    em_copy_to(mt, dense);
    const float expect[6] = {1, 4, 2, 5, 3, 6};
    CHECK(memcmp(dense, expect, sizeof dense) == 0);
    em_tensor *c = em_tensor_clone(NULL, mt);
    CHECK(em_is_contiguous(c) && memcmp(c->data, expect, sizeof expect) == 0);
    em_fill(mt, 9.0f);
    CHECK(m->data[0] == 9.0f && m->data[5] == 9.0f);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    em_tensor_print(out, em_tensor_from(NULL, 2, (int64_t[]){2, 3}, values), "m", 0);
    fclose(out);
    CHECK(strstr(buf, "[2, 3]") && strstr(buf, "[[1, 2, 3],") && strstr(buf, "[4, 5, 6]]"));
    free(buf);
    em_step_end();
}

static void test_rng_and_init(void)
{
    em_rng a, b;
    em_rng_seed(&a, 42);
    em_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= em_rng_next(&a) == em_rng_next(&b);
    CHECK(same);
    em_rng_seed(&b, 43);
    CHECK(em_rng_next(&a) != em_rng_next(&b));

    /* Moments of the normal generator over 100k draws. */
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        double x = em_rng_normal(&a);
        sum += x;
        sq += x * x;
    }
    CHECK_NEAR(sum / 100000, 0.0, 0.02);
    CHECK_NEAR(sq / 100000, 1.0, 0.02);

    int64_t items[10];
    for (int i = 0; i < 10; i++)
        items[i] = i;
    em_rng_shuffle(&a, items, 10);
    int seen = 0;
    for (int i = 0; i < 10; i++)
        seen |= 1 << items[i];
    CHECK(seen == 0x3ff);

    /* Kaiming uniform with a = sqrt(5) (PyTorch's Linear): bound 1/sqrt(fan_in). */
    em_tensor *w = em_tensor_zeros2(NULL, 64, 100);
    em_init_kaiming_uniform(w, &a, sqrtf(5.0f));
    float lo = 1, hi = -1;
    for (int64_t i = 0; i < w->numel; i++) {
        lo = fminf(lo, w->data[i]);
        hi = fmaxf(hi, w->data[i]);
    }
    CHECK(lo >= -0.1f && hi <= 0.1f && lo < -0.09f && hi > 0.09f);
    int64_t fan_in, fan_out;
    em_tensor *conv = em_tensor_zeros4(NULL, 8, 3, 5, 5);
    em_fan_in_out(conv, &fan_in, &fan_out);
    CHECK(fan_in == 75 && fan_out == 200);
    em_init_xavier_normal(w, &a, 1.0f);
    double var = 0;
    for (int64_t i = 0; i < w->numel; i++)
        var += (double)w->data[i] * w->data[i];
    CHECK_NEAR(var / (double)w->numel, 2.0 / 164.0, 0.15 * 2.0 / 164.0);
    em_step_end();
}

int main(void)
{
    test_arena();
    test_creation_and_shapes();
    test_rng_and_init();
    return test_finish();
}
