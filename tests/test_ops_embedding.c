/* em_embedding: PyTorch parity (lookup and the scatter-add into the weight's gradient,
 * with and without padding_idx), a 0-d id, the ids being copied, a large batch against a
 * plain loop (the threaded scatter), numeric gradient checks, and bad input. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

typedef struct emb_case {
    const char *name;
    int64_t padding_idx;
} emb_case;

/* The same table as EMBEDDING_CASES in tests/fixtures/gen_rnn.py. */
static const emb_case cases[] = {{"pad", 2}, {"nopad", -1}};

static em_tensor *load(em_st_file *f, const char *prefix, const char *field, bool input)
{
    char key[128];
    snprintf(key, sizeof key, "emb.%s.%s", prefix, field);
    return input ? test_fixture_input(f, key) : test_fixture_tensor(f, key);
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("embedding");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *name = cases[c].name;
        em_tensor *w = load(f, name, "weight", true);
        em_tensor *ids_f = load(f, name, "ids", false);
        int32_t ids[64];
        CHECK(ids_f->numel <= 64);
        for (int64_t k = 0; k < ids_f->numel; k++)
            ids[k] = (int32_t)ids_f->data[k];
        em_tensor *want = load(f, name, "out", false);
        em_tensor *out = em_embedding(ids, ids_f->ndim, ids_f->shape, w, cases[c].padding_idx);
        CHECK_MSG(out && em_same_shape(out, want), "%s: shape %s, want %s (%s)", name,
                  em_shape_str(out), em_shape_str(want), ember_last_error());
        if (!out)
            continue;
        char what[64];
        snprintf(what, sizeof what, "embedding %s forward", name);
        test_tensor_close(what, out, want->data, 0, 0);
        CHECK(em_backward_with(out, load(f, name, "gy", false)->data) == EM_OK);
        snprintf(what, sizeof what, "embedding %s grad weight", name);
        test_grad_close(what, w->grad, load(f, name, "gweight", false), 1e-6, 1e-6);
        if (cases[c].padding_idx >= 0) {
            /* The padding row is looked up but learns nothing. */
            const int64_t dim = w->shape[1];
            bool zero = true;
            for (int64_t j = 0; j < dim; j++)
                zero &= w->grad[cases[c].padding_idx * dim + j] == 0.0f;
            CHECK(zero);
        }
        em_step_end();
    }
    em_st_close(f);
}

/* A 0-d id gives a [D] row; ids are copied, so changing them after the call does not
 * change where backward scatters. */
static void test_scalar_and_copy(void)
{
    em_rng rng;
    em_rng_seed(&rng, 3);
    em_tensor *w = test_randn(&rng, 2, (int64_t[]){6, 4}, 1.0f);
    int32_t id = 5;
    em_tensor *row = em_embedding(&id, 0, NULL, w, -1);
    CHECK(row && row->ndim == 1 && row->shape[0] == 4);
    if (row)
        test_tensor_close("scalar id row", row, w->data + 5 * 4, 0, 0);

    int32_t ids[3] = {1, 3, 1};
    em_tensor *out = em_embedding(ids, 1, (int64_t[]){3}, w, -1);
    CHECK(out != NULL);
    ids[0] = ids[1] = ids[2] = 0;
    float gy[12];
    for (int k = 0; k < 12; k++)
        gy[k] = (float)(k + 1);
    w->grad = NULL;
    CHECK(out && em_backward_with(out, gy) == EM_OK);
    if (w->grad) {
        for (int j = 0; j < 4; j++) {
            CHECK_NEAR(w->grad[1 * 4 + j], gy[j] + gy[8 + j], 0);
            CHECK_NEAR(w->grad[3 * 4 + j], gy[4 + j], 0);
            CHECK_NEAR(w->grad[0 * 4 + j], 0, 0);
        }
    }
    em_step_end();
}

/* Enough ids that the scatter splits columns over threads; many repeats per row. */
static void test_large_batch(void)
{
    const int64_t vocab = 50, dim = 96, n = 4096;
    em_rng rng;
    em_rng_seed(&rng, 11);
    em_tensor *w = test_randn(&rng, 2, (int64_t[]){vocab, dim}, 1.0f);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *gy = malloc((size_t)(n * dim) * sizeof *gy);
    double *want = calloc((size_t)(vocab * dim), sizeof *want);
    for (int64_t k = 0; k < n; k++)
        ids[k] = (int32_t)em_rng_below(&rng, (uint64_t)vocab);
    for (int64_t k = 0; k < n * dim; k++)
        gy[k] = em_rng_normal(&rng);
    for (int64_t k = 0; k < n; k++)
        for (int64_t j = 0; j < dim && ids[k] != 7; j++)
            want[ids[k] * dim + j] += gy[k * dim + j];
    em_tensor *out = em_embedding(ids, 2, (int64_t[]){64, 64}, w, 7);
    CHECK(out && out->ndim == 3 && out->shape[2] == dim);
    bool rows_ok = out != NULL;
    for (int64_t k = 0; rows_ok && k < n; k++)
        rows_ok = memcmp(out->data + k * dim, w->data + ids[k] * dim, (size_t)dim * sizeof(float)) == 0;
    CHECK(rows_ok);
    CHECK(out && em_backward_with(out, gy) == EM_OK);
    float *wantf = malloc((size_t)(vocab * dim) * sizeof *wantf);
    for (int64_t k = 0; k < vocab * dim; k++)
        wantf[k] = (float)want[k];
    CHECK(w->grad && test_max_violation(w->grad, wantf, vocab * dim, 1e-4, 1e-5) <= 1.0);
    free(ids);
    free(gy);
    free(want);
    free(wantf);
    em_step_end();
}

typedef struct emb_closure {
    const int32_t *ids;
    int ndim;
    int64_t shape[2];
    int64_t padding_idx;
} emb_closure;

static em_tensor *emb_fn(void *user, em_tensor *const *in, int n)
{
    (void)n;
    const emb_closure *c = user;
    em_tensor *y = em_embedding(c->ids, c->ndim, c->shape, in[0], c->padding_idx);
    /* Square the rows so that the gradient depends on the weight's values. */
    return em_mul(y, y);
}

static void test_gradcheck_embedding(void)
{
    em_rng rng;
    em_rng_seed(&rng, 5);
    static const int32_t ids[6] = {0, 4, 4, 2, 1, 4};
    /* The padding row's true derivative is not zero (it is looked up), so the numeric
     * check only sees padding_idx leave the other rows alone; the parity test covers the
     * padding row itself. */
    emb_closure c = {ids, 2, {2, 3}, 3};
    em_tensor *w = test_randn(&rng, 2, (int64_t[]){5, 3}, 1.0f);
    test_gradcheck("embedding with padding", emb_fn, &c, &w, 1, 1e-2, 1e-3);
    c.padding_idx = -1;
    test_gradcheck("embedding without padding", emb_fn, &c, &w, 1, 1e-2, 1e-3);
    em_step_end();
}

static void test_bad_input(void)
{
    em_rng rng;
    em_rng_seed(&rng, 9);
    em_tensor *w = test_randn(&rng, 2, (int64_t[]){8, 3}, 1.0f);
    int32_t ids[6] = {0, 1, 2, 3, 8, 1};
    em_clear_error();
    CHECK(em_embedding(ids, 2, (int64_t[]){2, 3}, w, -1) == NULL);
    CHECK_ERROR_CONTAINS("id 8 at position [1, 1]");
    CHECK_ERROR_CONTAINS("[0, 8)");
    ids[4] = -3;
    CHECK(em_embedding(ids, 1, (int64_t[]){6}, w, -1) == NULL);
    CHECK_ERROR_CONTAINS("id -3 at position [4]");
    ids[4] = 4;
    CHECK(em_embedding(ids, 1, (int64_t[]){6}, w, 8) == NULL);
    CHECK_ERROR_CONTAINS("padding_idx 8");
    em_tensor *w3 = test_randn(&rng, 3, (int64_t[]){2, 2, 2}, 1.0f);
    CHECK(em_embedding(ids, 1, (int64_t[]){6}, w3, -1) == NULL);
    CHECK_ERROR_CONTAINS("[2, 2, 2]");
    CHECK(em_embedding(NULL, 1, (int64_t[]){6}, w, -1) == NULL);
    CHECK_ERROR_CONTAINS("no ids");
    CHECK(em_embedding(ids, 1, (int64_t[]){0}, w, -1) == NULL);
    CHECK(em_embedding(ids, EM_MAX_DIMS, (int64_t[]){1, 1, 1, 1, 1, 1}, w, -1) == NULL);
    CHECK_ERROR_CONTAINS("dimensions");
    /* An earlier failure passes through without a new message. */
    em_error("earlier");
    CHECK(em_embedding(ids, 1, (int64_t[]){6}, NULL, -1) == NULL);
    CHECK_ERROR_CONTAINS("earlier");
    /* Gradients off: nothing recorded. */
    bool was = em_set_grad_enabled(false);
    size_t tape = em_tape_length();
    em_tensor *out = em_embedding(ids, 1, (int64_t[]){6}, w, -1);
    CHECK(out && !out->requires_grad && em_tape_length() == tape);
    em_set_grad_enabled(was);
    em_step_end();
}

int main(void)
{
    test_parity();
    test_scalar_and_copy();
    test_large_batch();
    test_gradcheck_embedding();
    test_bad_input();
    return test_finish();
}
