/* nftw needs the X/Open extensions. */
#define _XOPEN_SOURCE 700
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures;
int test_checks;

int test_error_contains(const char *needle) { return strstr(ember_last_error(), needle) != NULL; }

double test_max_violation(const float *a, const float *b, int64_t n, double atol, double rtol)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] == b[i])
            continue;
        double v = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(v <= worst)) /* NaN counts as the worst */
            worst = isnan(v) ? INFINITY : v;
    }
    return worst;
}

static int compare_dense(const char *what, const float *got, const float *want, int64_t n, double atol,
                         double rtol)
{
    test_checks++;
    int64_t worst_i = -1;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (got[i] == want[i])
            continue;
        double v = fabs((double)got[i] - (double)want[i]) / (atol + rtol * fabs((double)want[i]));
        if (isnan(v) || v > worst) {
            worst = isnan(v) ? INFINITY : v;
            worst_i = i;
        }
    }
    if (worst > 1.0) {
        test_failures++;
        fprintf(stderr, "%s: element %lld is %.9g, expected %.9g (atol %g, rtol %g)\n", what,
                (long long)worst_i, got[worst_i], want[worst_i], atol, rtol);
        return 0;
    }
    return 1;
}

int test_tensor_close(const char *what, const em_tensor *t, const float *expected, double atol,
                      double rtol)
{
    if (!t) {
        test_checks++;
        test_failures++;
        fprintf(stderr, "%s: tensor is NULL (%s)\n", what, ember_last_error());
        return 0;
    }
    float *dense = malloc((size_t)t->numel * sizeof(float));
    em_copy_to(t, dense);
    int ok = compare_dense(what, dense, expected, t->numel, atol, rtol);
    free(dense);
    return ok;
}

int test_grad_close(const char *what, const float *grad, const em_tensor *expected, double atol,
                    double rtol)
{
    if (!grad || !expected) {
        test_checks++;
        test_failures++;
        fprintf(stderr, "%s: gradient or expected value missing\n", what);
        return 0;
    }
    float *want = malloc((size_t)expected->numel * sizeof(float));
    em_copy_to(expected, want);
    int ok = compare_dense(what, grad, want, expected->numel, atol, rtol);
    free(want);
    return ok;
}

const char *test_path(const char *relative)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", EMBER_SOURCE_DIR, relative);
    return buf;
}

em_st_file *test_fixture(const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, "tests/fixtures/%s.safetensors", name);
    em_st_file *f = em_st_open(test_path(rel));
    if (!f) {
        fprintf(stderr, "fixture %s: %s\n(regenerate with `make fixtures`)\n", name, ember_last_error());
        exit(1);
    }
    return f;
}

em_tensor *test_fixture_tensor(em_st_file *f, const char *name)
{
    em_tensor *t = em_st_load(f, name, NULL);
    if (!t) {
        fprintf(stderr, "fixture tensor %s: %s\n", name, ember_last_error());
        exit(1);
    }
    return t;
}

em_tensor *test_fixture_input(em_st_file *f, const char *name)
{
    em_tensor *t = test_fixture_tensor(f, name);
    t->requires_grad = true;
    return t;
}

int32_t *test_fixture_ids(em_st_file *f, const char *prefix, const char *name, int64_t *batch, int64_t *steps)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    em_tensor *t = test_fixture_tensor(f, full);
    int32_t *ids = malloc((size_t)t->numel * sizeof *ids);
    for (int64_t i = 0; i < t->numel; i++)
        ids[i] = (int32_t)t->data[i];
    *batch = t->shape[0];
    *steps = t->ndim > 1 ? t->shape[1] : t->numel;
    return ids;
}

void test_fixture_load_state(em_st_file *f, em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, state[i].name);
        CHECK_MSG(em_st_load_into(f, name, state[i].tensor) == EM_OK, "%s: %s", name, ember_last_error());
    }
}

void test_fixture_check_grads(em_st_file *f, const em_model *m, const char *prefix)
{
    int count;
    const em_named_tensor *state = em_model_state(m, &count);
    for (int i = 0; i < count; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.grad.%s", prefix, state[i].name);
        CHECK(test_grad_close(name, state[i].tensor->grad, test_fixture_tensor(f, name), 2e-5, 1e-3));
    }
}

em_tensor *test_sequence_loss(em_tensor *logits, const int32_t *targets)
{
    if (!logits)
        return NULL;
    int64_t v = logits->shape[logits->ndim - 1];
    return em_cross_entropy(em_reshape(logits, 2, (int64_t[]){logits->numel / v, v}), targets, 0.0f);
}

bool test_sequence_parity(em_st_file *f, const em_model *m, const char *prefix, em_tensor *logits,
                          const int32_t *targets)
{
    em_tensor *loss = test_sequence_loss(logits, targets);
    if (!loss)
        return false;
    char name[256];
    snprintf(name, sizeof name, "%s.logits", prefix);
    CHECK(test_tensor_close(name, logits, test_fixture_tensor(f, name)->data, 1e-5, 1e-4));
    snprintf(name, sizeof name, "%s.loss", prefix);
    CHECK_NEAR(em_item(loss), test_fixture_tensor(f, name)->data[0], 1e-5);
    CHECK_MSG(em_backward(loss) == EM_OK, "%s", ember_last_error());
    test_fixture_check_grads(f, m, prefix);
    return true;
}

void test_gradcheck(const char *what, em_gradcheck_fn fn, void *user, em_tensor *const *inputs, int n,
                    double eps, double tol)
{
    em_gradcheck_report r;
    int status = em_gradcheck(fn, user, inputs, n, eps, 0, &r);
    test_checks++;
    if (status != EM_OK) {
        test_failures++;
        fprintf(stderr, "gradcheck %s: %s\n", what, ember_last_error());
        return;
    }
    if (!(r.max_rel_error < tol) || r.checked == 0) {
        test_failures++;
        fprintf(stderr,
                "gradcheck %s: relative error %.3g >= %.3g at input %d element %lld "
                "(analytic %.7g, numeric %.7g, %lld checked)\n",
                what, r.max_rel_error, tol, r.worst_input, (long long)r.worst_index, r.analytic,
                r.numeric, (long long)r.checked);
    }
}

em_tensor *test_randn(em_rng *rng, int ndim, const int64_t *shape, float scale)
{
    em_tensor *t = em_tensor_empty(NULL, ndim, shape);
    em_init_normal(t, rng, 0.0f, scale);
    t->requires_grad = true;
    return t;
}

static char tmpdir_path[256];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

const char *test_tmpdir(void)
{
    char *dir = tmpdir_path;
    if (!dir[0]) {
        snprintf(dir, sizeof tmpdir_path, "/tmp/ember-test-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return dir;
}

int test_quick(void)
{
    const char *q = getenv("EMBER_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

int test_finish(void)
{
    em_release_thread_state();
    /* Keep the files of a failing test for inspection. */
    if (tmpdir_path[0] && !test_failures)
        nftw(tmpdir_path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (test_failures) {
        fprintf(stderr, "%d of %d checks failed\n", test_failures, test_checks);
        return 1;
    }
    printf("all %d checks passed\n", test_checks);
    return 0;
}
