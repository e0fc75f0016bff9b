/* Dataset views: a seeded validation split is disjoint from its training part and
 * covers the dataset; the same seed gives the same split; a view's batches hold exactly
 * the parent's examples (pixels and features, never copied); a view of a view points at
 * the original rows; samples for learning curves are nested; bad fractions and sizes
 * are named. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define COUNT 1000
#define PIXELS 6

typedef struct fake {
    em_dataset ds;
    uint8_t pixels[COUNT * PIXELS];
    int32_t labels[COUNT];
} fake;

/* Example i's pixels encode i, so that a gathered batch names its rows. */
static void make_fake(fake *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < COUNT; i++) {
        f->labels[i] = i % 7;
        for (int j = 0; j < PIXELS; j++)
            f->pixels[i * PIXELS + j] = (uint8_t)((i * 31 + j) % 251);
    }
    f->ds.count = COUNT;
    f->ds.item_ndim = 1;
    f->ds.item_shape[0] = PIXELS;
    f->ds.item_numel = PIXELS;
    f->ds.pixels = f->pixels;
    f->ds.labels = f->labels;
    f->ds.num_classes = 7;
    snprintf(f->ds.source, sizeof f->ds.source, "fake");
}

/* The original row of each example of a view, read back from its gathered pixels. */
static bool rows_of(const em_dataset *v, int64_t *rows)
{
    int64_t *idx = malloc((size_t)v->count * sizeof *idx);
    int32_t *labels = malloc((size_t)v->count * sizeof *labels);
    for (int64_t i = 0; i < v->count; i++)
        idx[i] = i;
    em_tensor *x = em_dataset_gather(v, idx, v->count, em_step_arena(), labels);
    bool ok = x != NULL;
    for (int64_t i = 0; ok && i < v->count; i++) {
        int64_t r = v->index ? v->index[i] : i;
        rows[i] = r;
        for (int j = 0; j < PIXELS; j++)
            ok &= x->data[i * PIXELS + j] == (float)((r * 31 + j) % 251) / 255.0f;
        ok &= labels[i] == (int32_t)(r % 7) && v->labels[i] == labels[i];
    }
    em_step_end();
    free(idx);
    free(labels);
    return ok;
}

static void test_split(void)
{
    static fake f;
    make_fake(&f);
    em_dataset *train = NULL, *val = NULL;
    CHECK(em_dataset_split(&f.ds, 0.1, 42, &train, &val) == EM_OK);
    if (!train || !val)
        return;
    CHECK(val->count == 100 && train->count == 900);
    CHECK(train->pixels == f.pixels && val->pixels == f.pixels); /* no copy */
    CHECK(strstr(val->source, "fake (validation split: 100 of 1000)") != NULL);
    CHECK(val->num_classes == 7 && val->item_numel == PIXELS);
    int64_t *rv = malloc(100 * sizeof *rv), *rt = malloc(900 * sizeof *rt);
    CHECK(rows_of(val, rv) && rows_of(train, rt));
    char seen[COUNT] = {0};
    for (int i = 0; i < 100; i++)
        seen[rv[i]]++;
    for (int i = 0; i < 900; i++)
        seen[rt[i]]++;
    bool each_once = true, sorted = true;
    for (int i = 0; i < COUNT; i++)
        each_once &= seen[i] == 1;
    for (int i = 1; i < 100; i++)
        sorted &= rv[i] > rv[i - 1];
    CHECK(each_once && sorted);
    /* Not the first 100 rows: the split is random. */
    CHECK(rv[99] > 150);

    /* The same seed, the same split; another seed, another. */
    em_dataset *t2 = NULL, *v2 = NULL, *t3 = NULL, *v3 = NULL;
    CHECK(em_dataset_split(&f.ds, 0.1, 42, &t2, &v2) == EM_OK);
    CHECK(em_dataset_split(&f.ds, 0.1, 43, &t3, &v3) == EM_OK);
    if (v2 && v3) {
        CHECK(memcmp(v2->index, val->index, 100 * sizeof(int64_t)) == 0);
        CHECK(memcmp(v3->index, val->index, 100 * sizeof(int64_t)) != 0);
    }

    /* A view of a view points at the original rows. */
    int64_t pick[3] = {5, 0, 899};
    em_dataset *vv = em_dataset_subset(train, pick, 3, "pick");
    CHECK(vv != NULL);
    if (vv) {
        int64_t r[3];
        CHECK(rows_of(vv, r));
        CHECK(r[0] == train->index[5] && r[1] == train->index[0] && r[2] == train->index[899]);
    }

    /* Nested samples. */
    em_dataset *s50 = em_dataset_sample(train, 50, 9), *s200 = em_dataset_sample(train, 200, 9);
    CHECK(s50 && s200);
    if (s50 && s200) {
        int inside = 0;
        for (int i = 0; i < 50; i++)
            for (int j = 0; j < 200; j++)
                inside += s50->index[i] == s200->index[j];
        CHECK(inside == 50);
    }

    /* Errors. */
    em_dataset *a = NULL, *b = NULL;
    CHECK(em_dataset_split(&f.ds, 1.0, 1, &a, &b) == EM_ERR && !a && !b);
    CHECK_ERROR_CONTAINS("between 0 and 1");
    CHECK(em_dataset_split(&f.ds, 0.9999, 1, &a, &b) == EM_ERR);
    CHECK_ERROR_CONTAINS("leaves no training examples out of 1000");
    CHECK(em_dataset_sample(&f.ds, 1001, 1) == NULL);
    CHECK_ERROR_CONTAINS("cannot sample 1001 of 1000");
    int64_t out[1] = {1000};
    CHECK(em_dataset_subset(&f.ds, out, 1, NULL) == NULL);
    CHECK_ERROR_CONTAINS("index 1000 at position 0 is out of range");

    /* A loader over a view visits each of its examples once per epoch. */
    em_loader *l = em_loader_new(val, 32, true, 3);
    em_batch batch;
    int64_t total = 0;
    int32_t label_sum = 0, want_sum = 0;
    while (l && em_loader_next(l, &batch)) {
        total += batch.n;
        for (int64_t i = 0; i < batch.n; i++)
            label_sum += batch.y[i];
        em_step_end();
    }
    for (int i = 0; i < 100; i++)
        want_sum += val->labels[i];
    CHECK(total == 100 && label_sum == want_sum);
    em_loader_free(l);

    free(rv);
    free(rt);
    em_dataset_free(s50);
    em_dataset_free(s200);
    em_dataset_free(vv);
    em_dataset_free(t2);
    em_dataset_free(v2);
    em_dataset_free(t3);
    em_dataset_free(v3);
    em_dataset_free(train);
    em_dataset_free(val);
}

int main(void)
{
    test_split();
    return test_finish();
}
