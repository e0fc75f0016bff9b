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
