/* ember compare: train several variants of one set-up with the same data, seed, data
 * order and budget, changing one thing (the optimizer, the activations, the model or
 * the amount of training data), and write a Markdown report with a PNG of the curves.
 * Every run also writes its own metrics file and plot. A run that diverges stops with
 * a line in the report; the others go on. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli_common.h"
#include "cli_training.h"
#include "commands.h"
#include "compare_variants.h"
#include "ember.h"

#define MAX_RUNS 64

static const char compare_details[] =
    "Give exactly one of --optimizers, --activations, --models or --train-sizes; MODEL\n"
    "is the model file for the first, second and fourth (--train-sizes goes with\n"
    "--models too: learning curves of several models). Every run starts from the same\n"
    "initial weights (--seed) and sees the same examples in the same order for the same\n"
    "number of steps. The default budget (a 20000-example subset, 10% of it held out for\n"
    "validation, 5 epochs) trains seven optimizers on the MLP in about a minute; raise\n"
    "--train-subset and --epochs for firmer conclusions. Runs use one thread unless\n"
    "--threads says otherwise: steps this small gain little from a second thread on an\n"
    "idle machine and lose much on a busy one, where threads wait for each other, and\n"
    "one thread makes the figures reproducible whatever the machine.\n"
    "\n"
    "Optimizers (with their default learning rates):\n"
    "  sgd 0.1, momentum (SGD, 0.9) 0.05, nesterov 0.05, adagrad 0.02, rmsprop 1e-3,\n"
    "  adam 1e-3, adamw 1e-3 (weight decay 0.01)\n"
    "Activations replace every activation line of the model: relu, leaky_relu,\n"
    "sigmoid, tanh, gelu, gelu_tanh, silu.\n"
    "\n"
    "Output in --out DIR: report.md, compare.png, and runs/NAME.metrics.csv and\n"
    "runs/NAME.plot.png for every run.\n";

static const char compare_examples[] =
    "  ember compare models/mlp.ember --optimizers sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw\n"
    "  ember compare models/mlp.ember --optimizers sgd,adam --lr sgd=0.2,adam=3e-4 --epochs 5\n"
    "  ember compare models/mlp.ember --activations relu,leaky_relu,sigmoid,tanh,gelu,silu\n"
    "  ember compare --models models/linear.ember,models/mlp.ember,models/cnn.ember\n"
    "  ember compare --models models/linear.ember,models/mlp.ember --train-sizes 500,2000,10000,60000\n";

typedef struct compare_setup {
    em_compare_axis axis;
    const char *names[MAX_RUNS];   /* what each run changes */
    int n;
    const char *models[MAX_RUNS];  /* model files (--models) */
    int n_models;
    int64_t sizes[MAX_RUNS];       /* --train-sizes */
    int n_sizes;
} compare_setup;

/* "models/mlp.ember" -> "mlp" */
static void model_label(char *buf, size_t cap, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    snprintf(buf, cap, "%.*s", (int)len, base);
}

/* A file name from a run's name: letters, digits, '-', '_' and '.' kept. */
static void file_label(char *buf, size_t cap, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) {
        char c = name[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
        buf[i] = keep ? c : '_';
    }
    buf[i] = '\0';
}

static void describe_optim(char *buf, size_t cap, em_optim_kind kind, const em_optim_opts *o)
{
    int n = snprintf(buf, cap, "%s lr %g", em_optim_name(kind), (double)o->lr);
    if (n < 0 || (size_t)n >= cap)
        return;
    if (o->momentum != 0.0f)
        n += snprintf(buf + n, cap - (size_t)n, ", momentum %g%s", (double)o->momentum,
                      o->nesterov ? " (nesterov)" : "");
    if (o->weight_decay != 0.0f && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, ", weight decay %g%s", (double)o->weight_decay,
                 kind == EM_OPTIM_ADAMW ? " (decoupled)" : "");
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return em_error("cannot create the directory %s: %s", path, strerror(errno));
    return EM_OK;
}

typedef struct compare_job {
    const char *data_spec;
    em_dataset *train, *test;
    em_train_opts base;          /* budget, seed, regularisation */
    const compare_preset *preset;/* the optimizer of every run unless it is what varies */
    compare_lr lrs[32];
    int n_lrs;
    float lr_all;
    bool weight_decay_given;
    float weight_decay;
    int64_t steps_budget;        /* learning curves: steps per run */
    const char *out_dir;
    uint64_t seed;
} compare_job;

static float lr_for(const compare_job *job, const char *name, float fallback)
{
    for (int i = 0; i < job->n_lrs; i++)
        if (strcmp(job->lrs[i].name, name) == 0)
            return job->lrs[i].lr;
    return isnan(job->lr_all) ? fallback : job->lr_all;
}

/* One run: the model built, trained, evaluated on the test set, recorded in *run. */
static void run_one(compare_job *job, em_compare_run *run, const char *model_path, const char *model_text,
                    const compare_preset *preset, em_dataset *train, bool quiet)
{
    em_history_init(&run->history);
    run->test_loss = run->test_accuracy = NAN;
    /* As em_dataset_split rounds it. */
    if (job->base.val_split > 0) {
        int64_t n_val = (int64_t)llround(job->base.val_split * (double)train->count);
        run->val_size = n_val < 1 ? 1 : n_val;
    }
    double t0 = em_now();
    em_model *m = model_text ? em_model_parse(model_text, model_path, job->seed) : em_model_load(model_path, job->seed);
    em_train_opts o = job->base;
    o.optimizer = preset->kind;
    o.optim = compare_preset_options(preset);
    o.optim.lr = lr_for(job, preset->name, preset->lr);
    if (job->weight_decay_given)
        o.optim.weight_decay = job->weight_decay;
    describe_optim(run->settings, sizeof run->settings, o.optimizer, &o.optim);
    if (job->steps_budget > 0) {
        int64_t batches = (train->count + o.batch_size - 1) / o.batch_size;
        int64_t epochs = (job->steps_budget + batches / 2) / batches;
        o.epochs = (int)(epochs < 1 ? 1 : epochs);
    }
    char label[96], metrics[4200], plot[4200];
    file_label(label, sizeof label, run->name);
    snprintf(metrics, sizeof metrics, "%s/runs/%s.metrics.csv", job->out_dir, label);
    snprintf(plot, sizeof plot, "%s/runs/%s.plot.png", job->out_dir, label);
    o.metrics_path = metrics;
    o.plot_path = plot;
    o.history = &run->history;
    em_train_result result;
    memset(&result, 0, sizeof result);
    int rc = EM_ERR;
    if (m && cli_fit_dataset(m, model_path, train) == EM_OK && cli_fit_dataset(m, model_path, job->test) == EM_OK) {
        run->params = em_model_param_count(m);
        rc = em_train(m, train, NULL, &o, &result);
    }
    if (rc != EM_OK) {
        snprintf(run->message, sizeof run->message, "%s", ember_last_error());
        run->failed = !run->history.diverged;
    } else if (em_evaluate(m, job->test, 0, &run->test_loss, &run->test_accuracy) != EM_OK) {
        snprintf(run->message, sizeof run->message, "test evaluation: %s", ember_last_error());
        run->failed = true;
    }
    run->seconds = em_now() - t0;
    em_model_free(m);

    em_diagnosis d;
    em_history_diagnose(&run->history, job->base.patience > 0 ? job->base.patience : 3, 0.0, 0.5, 50, &d);
    if (quiet)
        return;
    if (run->failed)
        printf("%-12s failed: %s\n", run->name, run->message);
    else if (run->history.diverged)
        printf("%-12s diverged at step %lld (epoch %d): the loss is not finite; the comparison goes on\n",
               run->name, (long long)run->history.diverged_step, run->history.diverged_epoch);
    else if (job->base.val_split > 0)
        printf("%-12s best validation accuracy %.2f%% (epoch %d), test accuracy %.2f%%, %.1f s\n", run->name,
               100.0 * d.best_val_accuracy, d.best_accuracy_epoch, 100.0 * run->test_accuracy, run->seconds);
    else
        printf("%-12s %lld examples: test accuracy %.2f%%, %.1f s\n", run->name, (long long)run->train_size,
               100.0 * run->test_accuracy, run->seconds);
    fflush(stdout);
}

/* Checks the variant names of the chosen axis; a usage error lists the valid ones. */
static int check_names(const args_spec *spec, const compare_setup *s)
{
    char valid[256];
    for (int i = 0; i < s->n; i++) {
        if (s->axis == EM_COMPARE_OPTIMIZERS && !compare_preset_find(s->names[i])) {
            compare_preset_names(valid, sizeof valid);
            return args_usage_error(spec, "unknown optimizer '%s' in --optimizers; valid: %s", s->names[i], valid);
        }
        em_activation act;
        if (s->axis == EM_COMPARE_ACTIVATIONS &&
            (em_activation_parse(s->names[i], &act) != EM_OK || act == EM_ACT_NONE)) {
            compare_activation_names(valid, sizeof valid);
            return args_usage_error(spec, "unknown activation '%s' in --activations; valid: %s", s->names[i],
                                    valid);
        }
        for (int j = 0; j < i; j++)
            if (strcmp(s->names[i], s->names[j]) == 0)
                return args_usage_error(spec, "'%s' is listed twice", s->names[i]);
    }
    return -1;
}

int cmd_compare_main(int argc, char **argv, int first)
{
    const char *data_spec = "fashion-mnist", *test_spec = NULL, *out_dir = NULL;
    const char *optimizers = NULL, *activations = NULL, *models = NULL, *train_sizes = NULL;
    const char *lr_text = NULL, *optimizer_name = "adam";
    int64_t label_column = -1, subset = 20000, steps = 0;
    cli_run_options run = {.epochs = 5, .batch = 64, .threads = 1, .progress = EM_PROGRESS_QUIET};
    double weight_decay = 0, target_loss = 0.5;
    cli_training training;
    cli_training_init(&training);
    training.val_split = 0.1;

    const args_option common[] = {
        {"optimizers", ARGS_STRING, "LIST", &optimizers,
         "compare these optimizers (sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw; 'all': the seven)",
         NULL, 0, 0, NULL, false},
        {"activations", ARGS_STRING, "LIST", &activations,
         "compare these activations, each replacing every activation line of MODEL", NULL, 0, 0, NULL, false},
        {"models", ARGS_STRING, "LIST", &models, "compare these model files", NULL, 0, 0, NULL, false},
        {"train-sizes", ARGS_STRING, "LIST", &train_sizes,
         "learning curves: train on nested samples of these sizes, test accuracy against size", NULL, 0, 0, NULL,
         false},
        {"data", ARGS_STRING, "SPEC", &data_spec, "training data: fashion-mnist, mnist, idx:IMAGES,LABELS, csv:FILE",
         NULL, 0, 0, NULL, false},
        {"test-data", ARGS_STRING, "SPEC", &test_spec, "test data", "the test split of --data", 0, 0, NULL, false},
        {"label-column", ARGS_INT, "N", &label_column, "CSV column holding the label (0-based)", "-1: the last",
         -1, 1e6, NULL, false},
        {"train-subset", ARGS_INT, "N", &subset,
         "train on a seeded random subset of N examples (0: all); the validation split comes out of it", NULL, 0,
         1e12, NULL, false},
        {"epochs", ARGS_INT, "N", &run.epochs, "epochs per run", NULL, 1, 1e6, NULL, false},
        {"steps", ARGS_INT, "N", &steps,
         "learning curves: optimizer steps per run, in whole epochs",
         "--epochs over the largest size, 2 epochs unless given", 0, 1e12, NULL, false},
        {"batch", ARGS_INT, "B", &run.batch, "examples per step", NULL, 1, 1 << 24, NULL, false},
        {"optimizer", ARGS_STRING, "NAME", &optimizer_name,
         "the optimizer of every run when the optimizer is not what varies", NULL, 0, 0, NULL, false},
        {"lr", ARGS_STRING, "X|NAME=X,...", &lr_text,
         "learning rate of every run, or per optimizer (sgd=0.1,adam=1e-3)", "per optimizer, see below", 0, 0,
         NULL, false},
        {"weight-decay", ARGS_FLOAT, "W", &weight_decay, "weight decay of every run", "0; 0.01 for adamw", 0, 1e6,
         NULL, false},
        {"target-loss", ARGS_FLOAT, "X", &target_loss, "report the steps each run takes to a training loss of X",
         NULL, 1e-9, 1e9, NULL, false},
        {"seed", ARGS_INT, "S", &run.seed, "seed of the initial weights, the subset, the split and the data order",
         NULL, 0, 9e18, NULL, false},
        {"threads", ARGS_INT, "T", &run.threads, "worker threads of each run (0: one per core)", NULL, 0, 4096, NULL,
         false},
        {"out", ARGS_STRING, "DIR", &out_dir, "directory of the report, its plot and the runs' files",
         "compare-<what varies>", 0, 0, NULL, false},
    };
    enum { N_COMMON = (int)(sizeof common / sizeof common[0]) };
    args_option options[N_COMMON + CLI_REGULARISATION_OPTIONS];
    int n_options = cli_training_table(&training, common, N_COMMON, false, options);
    /* The validation split is on by default here: the report is about it. */
    for (int i = N_COMMON; i < n_options; i++)
        if (strcmp(options[i].name, "val-split") == 0)
            options[i].default_text = "0.1; off for --train-sizes";

    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "compare",
        .usage = "[MODEL] (--optimizers LIST | --activations LIST | --models LIST | --train-sizes LIST) [options]",
        .summary = "Train variants with the same data, seed and budget; write a report and a plot.",
        .details = compare_details,
        .options = options,
        .n_options = n_options,
        .min_positionals = 0,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = compare_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    const char *model_path = positionals[0];

    /* What varies. */
    compare_setup setup;
    memset(&setup, 0, sizeof setup);
    int axes = (optimizers != NULL) + (activations != NULL) + (models != NULL && !train_sizes) + (train_sizes != NULL);
    if (axes != 1)
        return args_usage_error(&spec, "give exactly one of --optimizers, --activations, --models and "
                                       "--train-sizes (--models goes with --train-sizes too)");
    static char list_text[4096], model_text[4096];
    if (optimizers) {
        setup.axis = EM_COMPARE_OPTIMIZERS;
        snprintf(list_text, sizeof list_text, "%s",
                 strcmp(optimizers, "all") == 0 ? "sgd,momentum,nesterov,adagrad,rmsprop,adam,adamw" : optimizers);
    } else if (activations) {
        setup.axis = EM_COMPARE_ACTIVATIONS;
        snprintf(list_text, sizeof list_text, "%s", activations);
    } else if (train_sizes) {
        setup.axis = EM_COMPARE_TRAIN_SIZES;
    } else {
        setup.axis = EM_COMPARE_MODELS;
    }
    if (setup.axis == EM_COMPARE_OPTIMIZERS || setup.axis == EM_COMPARE_ACTIVATIONS) {
        setup.n = compare_split_list(list_text, setup.names, MAX_RUNS);
        if (setup.n < 0)
            return args_usage_error(&spec, "the list must name one to %d variants, without empty items", MAX_RUNS);
        status = check_names(&spec, &setup);
        if (status >= 0)
            return status;
    }
    if (models) {
        snprintf(model_text, sizeof model_text, "%s", models);
        setup.n_models = compare_split_list(model_text, setup.models, MAX_RUNS);
        if (setup.n_models < 0)
            return args_usage_error(&spec, "--models must name one to %d files, without empty items", MAX_RUNS);
        if (model_path)
            return args_usage_error(&spec, "give the models with --models or as MODEL, not both");
    } else if (model_path) {
        setup.models[0] = model_path;
        setup.n_models = 1;
    } else {
        return args_usage_error(&spec, "missing the model: give MODEL (or --models)");
    }
    if (setup.axis != EM_COMPARE_MODELS && setup.axis != EM_COMPARE_TRAIN_SIZES && setup.n_models != 1)
        return args_usage_error(&spec, "--%s compares variants of one model", optimizers ? "optimizers" : "activations");
    if (train_sizes) {
        static char sizes_text[1024];
        const char *items[MAX_RUNS];
        snprintf(sizes_text, sizeof sizes_text, "%s", train_sizes);
        int n = compare_split_list(sizes_text, items, MAX_RUNS);
        if (n < 0)
            return args_usage_error(&spec, "--train-sizes must list one to %d sizes", MAX_RUNS);
        for (int i = 0; i < n; i++) {
            char *end;
            long long v = strtoll(items[i], &end, 10);
            if (*end || v < 1)
                return args_usage_error(&spec, "--train-sizes: '%s' is not a number of examples >= 1", items[i]);
            if (i > 0 && v <= setup.sizes[i - 1])
                return args_usage_error(&spec, "--train-sizes must increase, got %lld after %lld", v,
                                        (long long)setup.sizes[i - 1]);
            setup.sizes[i] = v;
        }
        setup.n_sizes = n;
        if ((int64_t)n * setup.n_models > MAX_RUNS)
            return args_usage_error(&spec, "at most %d runs (models x sizes)", MAX_RUNS);
        if (!args_given(&spec, "val-split"))
            training.val_split = 0.0;
        if (!args_given(&spec, "train-subset"))
            subset = 0;
        /* Two epochs over the largest size: the learning curve's runs are many. */
        if (!args_given(&spec, "epochs"))
            run.epochs = 2;
    }
    if (steps > 0 && !train_sizes)
        return args_usage_error(&spec, "--steps goes with --train-sizes (other comparisons use --epochs)");

    compare_job job;
    memset(&job, 0, sizeof job);
    job.lr_all = NAN;
    job.seed = (uint64_t)run.seed;
    static char lr_copy[1024];
    if (lr_text) {
        snprintf(lr_copy, sizeof lr_copy, "%s", lr_text);
        if (compare_parse_lrs(lr_copy, job.lrs, 32, &job.n_lrs, &job.lr_all) != EM_OK)
            return args_usage_error(&spec, "%s", ember_last_error());
        for (int i = 0; i < job.n_lrs; i++)
            if (!compare_preset_find(job.lrs[i].name)) {
                char valid[256];
                compare_preset_names(valid, sizeof valid);
                return args_usage_error(&spec, "--lr: unknown optimizer '%s'; valid: %s", job.lrs[i].name, valid);
            }
    }
    job.preset = compare_preset_find(optimizer_name);
    if (!job.preset) {
        char valid[256];
        compare_preset_names(valid, sizeof valid);
        return args_usage_error(&spec, "unknown optimizer '%s' in --optimizer; valid: %s", optimizer_name, valid);
    }
    if (optimizers && args_given(&spec, "optimizer"))
        return args_usage_error(&spec, "--optimizer sets the optimizer of every run; with --optimizers it varies");
    job.weight_decay_given = args_given(&spec, "weight-decay");
    job.weight_decay = (float)weight_decay;

    em_train_opts base = em_train_defaults();
    status = cli_training_apply(&training, &spec, false, &base);
    if (status >= 0)
        return status;
    cli_run_apply(&run, &base);
    job.base = base;
    job.data_spec = data_spec;

    static char default_out[64];
    if (!out_dir) {
        static const char *const suffix[] = {"optimizers", "activations", "models", "train-sizes"};
        snprintf(default_out, sizeof default_out, "compare-%s", suffix[setup.axis]);
        out_dir = default_out;
    }
    job.out_dir = out_dir;

    int exit_status = EXIT_LIBRARY_ERROR;
    em_dataset *all_train = NULL, *train = NULL, *test = NULL;
    em_compare_run *runs = calloc(MAX_RUNS, sizeof *runs);
    char runs_dir[4200];
    snprintf(runs_dir, sizeof runs_dir, "%s/runs", out_dir);
    if (!runs || make_dir(out_dir) != EM_OK || make_dir(runs_dir) != EM_OK)
        goto fail;
    if (cli_open_data(data_spec, test_spec, (int)label_column, true, &all_train, &test) != EM_OK)
        goto fail;
    if (subset > 0 && subset < all_train->count) {
        train = em_dataset_sample(all_train, subset, (uint64_t)run.seed);
        if (!train)
            goto fail;
    }
    em_dataset *pool = train ? train : all_train;
    job.train = pool;
    job.test = test;
    if (setup.axis == EM_COMPARE_TRAIN_SIZES && setup.sizes[setup.n_sizes - 1] > pool->count) {
        em_error("--train-sizes: %lld examples asked for, %s has %lld", (long long)setup.sizes[setup.n_sizes - 1],
                 data_spec, (long long)pool->count);
        goto fail;
    }
    if (setup.axis == EM_COMPARE_TRAIN_SIZES) {
        int64_t largest = setup.sizes[setup.n_sizes - 1];
        job.steps_budget = steps > 0 ? steps : run.epochs * ((largest + run.batch - 1) / run.batch);
    }

    /* The set-up, in the report's words. */
    char model_name[64], setup_text[2048], regularisation[512];
    model_label(model_name, sizeof model_name, setup.models[0]);
    cli_training_describe(&base, regularisation, sizeof regularisation);
    char budget[256];
    if (setup.axis == EM_COMPARE_TRAIN_SIZES)
        snprintf(budget, sizeof budget, "about %lld optimizer steps per run (whole epochs) in batches of %lld",
                 (long long)job.steps_budget, (long long)run.batch);
    else
        snprintf(budget, sizeof budget, "%lld epoch%s in batches of %lld", (long long)run.epochs,
                 run.epochs == 1 ? "" : "s", (long long)run.batch);
    char optimizer_text[192] = "";
    if (setup.axis != EM_COMPARE_OPTIMIZERS) {
        em_optim_opts po = compare_preset_options(job.preset);
        po.lr = lr_for(&job, job.preset->name, job.preset->lr);
        if (job.weight_decay_given)
            po.weight_decay = job.weight_decay;
        char d[160];
        describe_optim(d, sizeof d, job.preset->kind, &po);
        snprintf(optimizer_text, sizeof optimizer_text, " Optimizer of every run: %s.", d);
    }
    snprintf(setup_text, sizeof setup_text,
             "Data: %s, %lld training examples%s; test set: %lld examples. Budget: %s. Seed %lld: every run starts "
             "from the same weights and sees the same examples in the same order.%s Run with %d thread%s.",
             data_spec, (long long)pool->count, pool != all_train ? " (a seeded random subset)" : "",
             (long long)test->count, budget, (long long)run.seed, optimizer_text, em_num_threads(),
             em_num_threads() == 1 ? "" : "s");
    if (regularisation[0]) {
        size_t len = strlen(setup_text);
        snprintf(setup_text + len, sizeof setup_text - len, " Also: %s.", regularisation);
    }
    char title[256];
    switch (setup.axis) {
    case EM_COMPARE_OPTIMIZERS:
        snprintf(title, sizeof title, "Optimizers: %s on %s", model_name, data_spec);
        break;
    case EM_COMPARE_ACTIVATIONS:
        snprintf(title, sizeof title, "Activations: %s on %s", model_name, data_spec);
        break;
    case EM_COMPARE_MODELS:
        snprintf(title, sizeof title, "Models on %s", data_spec);
        break;
    default:
        snprintf(title, sizeof title, "Learning curves on %s", data_spec);
        break;
    }
    printf("%s\n%s\n", title, setup_text);
    fflush(stdout);

    int n_runs = 0;
    double started = em_now();
    if (setup.axis == EM_COMPARE_OPTIMIZERS) {
        for (int i = 0; i < setup.n; i++, n_runs++) {
            em_compare_run *r = &runs[n_runs];
            snprintf(r->name, sizeof r->name, "%s", setup.names[i]);
            snprintf(r->model, sizeof r->model, "%s", model_name);
            r->train_size = pool->count;
            run_one(&job, r, setup.models[0], NULL, compare_preset_find(setup.names[i]), pool, false);
        }
    } else if (setup.axis == EM_COMPARE_ACTIVATIONS) {
        for (int i = 0; i < setup.n; i++, n_runs++) {
            em_compare_run *r = &runs[n_runs];
            snprintf(r->name, sizeof r->name, "%s", setup.names[i]);
            snprintf(r->model, sizeof r->model, "%s", model_name);
            r->train_size = pool->count;
            char *text = compare_replace_activations(setup.models[0], setup.names[i]);
            if (!text)
                goto fail;
            run_one(&job, r, setup.models[0], text, job.preset, pool, false);
            free(text);
        }
    } else if (setup.axis == EM_COMPARE_MODELS) {
        for (int i = 0; i < setup.n_models; i++, n_runs++) {
            em_compare_run *r = &runs[n_runs];
            model_label(r->name, sizeof r->name, setup.models[i]);
            snprintf(r->model, sizeof r->model, "%s", r->name);
            r->train_size = pool->count;
            run_one(&job, r, setup.models[i], NULL, job.preset, pool, false);
        }
    } else {
        for (int k = 0; k < setup.n_sizes; k++) {
            em_dataset *sample =
                setup.sizes[k] < pool->count ? em_dataset_sample(pool, setup.sizes[k], (uint64_t)run.seed) : NULL;
            if (setup.sizes[k] < pool->count && !sample)
                goto fail;
            for (int i = 0; i < setup.n_models; i++, n_runs++) {
                em_compare_run *r = &runs[n_runs];
                model_label(r->model, sizeof r->model, setup.models[i]);
                snprintf(r->name, sizeof r->name, "%.40s-%lld", r->model, (long long)setup.sizes[k]);
                r->train_size = setup.sizes[k];
                run_one(&job, r, setup.models[i], NULL, job.preset, sample ? sample : pool, false);
            }
            em_dataset_free(sample);
        }
    }

    em_comparison c = {
        .axis = setup.axis,
        .title = title,
        .setup = setup_text,
        .runs = runs,
        .n_runs = n_runs,
        .patience = base.patience > 0 ? base.patience : 3,
        .min_delta = 0.0,
        .target_loss = target_loss,
        .window = 50,
    };
    char report[4200], png[4200];
    snprintf(report, sizeof report, "%s/report.md", out_dir);
    snprintf(png, sizeof png, "%s/compare.png", out_dir);
    if (em_compare_plot(&c, png) != EM_OK || em_compare_write_report(&c, report, "compare.png") != EM_OK)
        goto fail;
    printf("%d runs in %.1f s; report %s, plot %s, each run's metrics and plot in %s\n", n_runs,
           em_now() - started, report, png, runs_dir);
    exit_status = EXIT_OK;
    goto done;

fail:
    fflush(stdout);
    cli_library_error();
done:
    for (int i = 0; runs && i < MAX_RUNS; i++)
        em_history_free(&runs[i].history);
    free(runs);
    em_dataset_free(train);
    em_dataset_free(test);
    em_dataset_free(all_train);
    return exit_status;
}
