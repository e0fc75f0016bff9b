/* ember train: a model description, a dataset and an optimizer in, a checkpoint, a plot
 * and a metrics file out. The loop itself is em_train; this file turns options into its
 * arguments and checks that model and data fit together before any work starts. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli_common.h"
#include "cli_stop.h"
#include "cli_training.h"
#include "commands.h"
#include "ember.h"
#include "train_text.h"

static const char *const window_names[] = {"random", "sequential", NULL};

static const char train_details[] =
    "MODEL is a model description file (see models/*.ember). Each epoch prints the\n"
    "train loss, test loss, test accuracy, seconds and samples per second; the final\n"
    "line repeats the last epoch's figures.\n"
    "\n"
    "Data specs:\n"
    "  fashion-mnist       the train split to train on, the test split to test on\n"
    "                      ($EMBER_DATA_DIR or Debian's dataset-fashion-mnist)\n"
    "  mnist               the same for MNIST\n"
    "  idx:IMAGES,LABELS   IDX files (plain or gzip), used for training only\n"
    "  csv:FILE            numeric CSV, one example a line, the label in --label-column\n"
    "  fortunes            text: Debian's fortunes corpus, bytes as tokens (a language\n"
    "                      model: models/lstm.ember); its last --val-split (10%) is the\n"
    "                      validation text; figures in bits per byte and perplexity;\n"
    "                      Adam, lr 2e-3 and batch 32 unless given (W3's set-up); a gpt\n"
    "                      (models/gpt.ember) as GPT-2 trains: AdamW, lr 1e-3, weight\n"
    "                      decay 0.1 on matrices, cosine schedule after a warm-up of a\n"
    "                      tenth of the run (at most 100 steps), clip-norm 1, batch 16,\n"
    "                      windows as long as its context; options given replace these\n"
    "  text:FILE           text: a file's bytes, likewise\n"
    "Data whose items hold as many values as the model's input but in another layout\n"
    "(784 vs 1x28x28) is reshaped to the model's input.\n";

static const char train_examples[] =
    "  ember train models/mlp.ember --data fashion-mnist --epochs 5 --save mlp.safetensors\n"
    "  ember train models/cnn.ember --optimizer adam --lr 1e-3 --plot cnn.png\n"
    "  ember train tiny.ember --data csv:train.csv --test-data csv:test.csv --label-column 0\n"
    "  ember train models/lstm.ember --data fortunes --seq-len 64 --batch 32 --steps 200 --optimizer adam \\\n"
    "      --lr 2e-3 --save lstm.safetensors\n";

/* The metrics and plot of a saved run go beside its weights: w.safetensors gives
 * w.metrics.csv and w.plot.png (unless --metrics, --plot or --no-log say otherwise). */
static void beside(char *buf, size_t cap, const char *path, const char *extension)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    snprintf(buf, cap, "%.*s%s", (int)stem, path, extension);
}

/* Frees the model on an early way out; gives back the exit status. */
static int release(em_model *model, int status)
{
    em_model_free(model);
    return status;
}

static void print_final(const em_train_result *r, const em_dataset *test)
{
    const em_epoch_stats *s = &r->last;
    printf("final: epochs %d, train loss %.4f", r->epochs_run, s->train_loss);
    if (test && !isnan(s->test_accuracy)) {
        long long correct = llround(s->test_accuracy * (double)test->count);
        printf(", test loss %.4f, test accuracy %.2f%% (%lld/%lld)", s->test_loss,
               100.0 * s->test_accuracy, correct, (long long)test->count);
    } else {
        printf(", no test set");
    }
    printf(", %.1f s, %.0f samples/s\n", r->total_seconds, s->samples_per_second);
}

int cmd_train_main(int argc, char **argv, int first)
{
    const char *data_spec = "fashion-mnist";
    const char *test_spec = NULL;
    int64_t label_column = -1;
    int64_t seq_len = 64, steps = 0, eval_every = 0, eval_bytes = 0, val_chunk = 0;
    int windows = 0;
    bool no_shuffle = false, no_log = false, detect_anomaly = false;
    const char *plot_path = NULL, *metrics_path = NULL, *log_dir = NULL;
    cli_run_options run = {.epochs = 1, .batch = 64, .progress = EM_PROGRESS_AUTO};

    cli_training training;
    cli_training_init(&training);

    const args_option common[] = {
        {"data", ARGS_STRING, "SPEC", &data_spec,
         "training data: fashion-mnist, mnist, idx:IMAGES,LABELS, csv:FILE, or text: fortunes, text:FILE",
         "fortunes for a model that takes tokens (an embedding first), else fashion-mnist", 0, 0, NULL, false},
        {"test-data", ARGS_STRING, "SPEC", &test_spec,
         "test data, same forms as --data (files have no test split)", "the test split of --data",
         0, 0, NULL, false},
        {"epochs", ARGS_INT, "N", &run.epochs, "passes over the training data", NULL, 1, 1e6, NULL, false},
        {"batch", ARGS_INT, "B", &run.batch, "examples per step", NULL, 1, 1 << 24, NULL, false},
        {"seed", ARGS_INT, "S", &run.seed, "seed of the initialisation, data order and dropout", NULL,
         0, 9e18, NULL, false},
        {"threads", ARGS_INT, "T", &run.threads, "worker threads", "0: one per core", 0, 4096, NULL, false},
        {"save", ARGS_STRING, "FILE", &run.save_path, "write a safetensors checkpoint at the end", NULL,
         0, 0, NULL, false},
        {"plot", ARGS_STRING, "FILE.png", &plot_path,
         "plot loss, accuracy, learning rate and gradient norm to a PNG", "FILE.plot.png beside --save FILE.safetensors", 0, 0, NULL, false},
        {"metrics", ARGS_STRING, "FILE.csv", &metrics_path,
         "write per-step and per-epoch metrics (loss, accuracy, lr, gradient norm, seconds)",
         "FILE.metrics.csv beside --save FILE.safetensors",
         0, 0, NULL, false},
        {"log-dir", ARGS_STRING, "DIR", &log_dir, "write metrics.csv and plot.png into DIR", NULL, 0, 0, NULL,
         false},
        {"no-log", ARGS_FLAG, NULL, &no_log, "no metrics file or plot beside --save", NULL, 0, 0, NULL, false},
        {"checkpoint", ARGS_STRING, "FILE", &run.checkpoint_path,
         "full training state (weights, optimizer, data position, generators), written at the "
         "end, every --checkpoint-every steps and on Ctrl-C", NULL, 0, 0, NULL, false},
        {"checkpoint-every", ARGS_INT, "N", &run.checkpoint_every, "steps between checkpoints",
         "0: at the end only", 0, 9e15, NULL, false},
        {"resume", ARGS_STRING, "FILE", &run.resume_path,
         "continue from a checkpoint; with the same model, data, options and thread count "
         "the results are bit-identical to an uninterrupted run", NULL, 0, 0, NULL, false},
        {"max-steps", ARGS_INT, "N", &run.max_steps, "stop after this many steps in total, as Ctrl-C does",
         "0: no limit", 0, 9e15, NULL, false},
        {"label-column", ARGS_INT, "N", &label_column, "CSV column holding the label (0-based)",
         "-1: the last column", -1, 1e6, NULL, false},
        {"no-shuffle", ARGS_FLAG, NULL, &no_shuffle, "visit the training data in file order", NULL,
         0, 0, NULL, false},
        {"progress", ARGS_CHOICE, "MODE", &run.progress,
         "auto: a bar on a terminal, lines otherwise; bar; lines; quiet", NULL, 0, 0,
         cli_progress_names, false},
        {"seq-len", ARGS_INT, "T", &seq_len, "text: bytes per training window", NULL, 1, 1 << 24, NULL, false},
        {"steps", ARGS_INT, "N", &steps, "text: optimizer steps to train for", "0: --epochs passes over the text",
         0, 9e15, NULL, false},
        {"windows", ARGS_CHOICE, "ORDER", &windows,
         "text: random windows, or sequential tracks whose recurrent state carries from batch to batch "
         "(truncated backpropagation through time)", NULL, 0, 0, window_names, false},
        {"eval-every", ARGS_INT, "N", &eval_every, "text: steps between evaluations of the validation text",
         "0: after each pass and at the end", 0, 9e15, NULL, false},
        {"eval-bytes", ARGS_INT, "N", &eval_bytes, "text: bytes of the validation text evaluated", "0: all", 0,
         9e15, NULL, false},
        {"val-chunk", ARGS_INT, "N", &val_chunk,
         "text: validate on a seeded choice of N-byte chunks (--val-split of them) instead of the end",
         "0: the end of the text", 0, 1e12, NULL, false},
        {"detect-anomaly", ARGS_FLAG, NULL, &detect_anomaly,
         "check every op's output and gradient for NaN and infinity, naming the first op "
         "that produced one when training diverges (slower)", NULL, 0, 0, NULL, false},
    };
    enum { N_COMMON = (int)(sizeof common / sizeof common[0]) };
    args_option options[N_COMMON + CLI_OPTIMIZER_OPTIONS + CLI_REGULARISATION_OPTIONS];
    int n_options = cli_training_table(&training, common, N_COMMON, true, options);
    const char *positionals[1] = {NULL};
    args_spec spec = {
        .command = "train",
        .usage = "MODEL [options]",
        .summary = "Train a model described in a file and report its test accuracy.",
        .details = train_details,
        .options = options,
        .n_options = n_options,
        .min_positionals = 1,
        .max_positionals = 1,
        .positionals = positionals,
        .examples = train_examples,
    };
    int status = args_parse(&spec, argc, argv, first);
    if (status >= 0)
        return status;
    const char *model_path = positionals[0];

    status = cli_run_check(&run, &spec);
    if (status >= 0)
        return status;
    em_set_detect_anomaly(detect_anomaly);

    /* The model is built first: what it is picks the defaults. Without --data, a model
     * that takes tokens (an embedding first) trains on the default text, any other on
     * the default images. */
    em_model *model = em_model_load(model_path, (uint64_t)run.seed);
    if (!model)
        return cli_library_error();
    if (!args_given(&spec, "data") && em_model_vocab_size(model) > 0)
        data_spec = "fortunes";
    em_gpt_config gpt;
    const bool is_gpt = em_model_is_gpt(model) && em_model_gpt_config(model, &gpt) == EM_OK;
    const bool text = em_text_is_spec(data_spec);
    static const char *const text_only[] = {"seq-len", "steps", "windows", "eval-every", "eval-bytes", "val-chunk"};
    for (size_t i = 0; !text && i < sizeof text_only / sizeof text_only[0]; i++)
        if (args_given(&spec, text_only[i]))
            return release(model, args_usage_error(&spec, "--%s applies to text (--data fortunes or text:FILE)",
                                                    text_only[i]));
    if (text && !args_given(&spec, "val-split"))
        training.val_split = 0.1;
    /* Text defaults to W3's set-up: Adam, lr 2e-3, batch 32. A gpt trains as GPT-2 does:
     * AdamW, lr 1e-3 and weight decay 0.1 on the matrices, a cosine schedule after a linear
     * warm-up (a tenth of the run, at most 100 steps), gradient norms clipped to 1, batches
     * of 16 windows as long as the context. Each option given replaces its default. */
    const bool gpt_defaults = text && is_gpt;
    if (text && !args_given(&spec, "optimizer"))
        training.optimizer = gpt_defaults ? EM_OPTIM_ADAMW : EM_OPTIM_ADAM;
    if (text && !args_given(&spec, "batch"))
        run.batch = gpt_defaults ? 16 : 32;
    if (gpt_defaults) {
        if (!args_given(&spec, "seq-len"))
            seq_len = gpt.context;
        if (!args_given(&spec, "schedule"))
            training.schedule = EM_SCHEDULE_COSINE;
        if (!args_given(&spec, "clip-norm") && !args_given(&spec, "clip-value"))
            training.clip_norm = 1.0;
        /* the default decay reaches the matrices only, not biases and LayerNorm gains */
        if (training.optimizer == EM_OPTIM_ADAMW && !args_given(&spec, "weight-decay") &&
            !args_given(&spec, "param-group"))
            training.no_decay_bias_norm = true;
    }
    const bool warmup_auto = gpt_defaults && training.schedule == EM_SCHEDULE_COSINE && !args_given(&spec, "warmup");

    em_train_opts opts = em_train_defaults();
    status = cli_training_apply(&training, &spec, true, &opts);
    if (status >= 0)
        return release(model, status);
    if (text && !args_given(&spec, "optimizer") && !args_given(&spec, "lr"))
        opts.optim.lr = gpt_defaults ? 1e-3f : 2e-3f;
    if (gpt_defaults && opts.optimizer == EM_OPTIM_ADAMW && !args_given(&spec, "weight-decay"))
        opts.optim.weight_decay = 0.1f;
    em_optim_kind kind = opts.optimizer;
    if (no_log && (log_dir || plot_path || metrics_path))
        return release(model, args_usage_error(&spec, "--no-log contradicts --log-dir, --plot and --metrics"));
    char log_metrics[4096], log_plot[4096];
    if (log_dir) {
        snprintf(log_metrics, sizeof log_metrics, "%s/metrics.csv", log_dir);
        snprintf(log_plot, sizeof log_plot, "%s/plot.png", log_dir);
    } else if (run.save_path && !no_log) {
        beside(log_metrics, sizeof log_metrics, run.save_path, ".metrics.csv");
        beside(log_plot, sizeof log_plot, run.save_path, ".plot.png");
    }
    if (!metrics_path && (log_dir || (run.save_path && !no_log)))
        metrics_path = log_metrics;
    if (!plot_path && (log_dir || (run.save_path && !no_log)))
        plot_path = log_plot;
    cli_run_apply(&run, &opts);
    opts.shuffle = !no_shuffle;
    opts.plot_path = plot_path;
    opts.metrics_path = metrics_path;

    /* Fails before any work when an output cannot be written. */
    if (log_dir && mkdir(log_dir, 0777) != 0 && errno != EEXIST) {
        em_error("--log-dir %s: cannot create it: %s", log_dir, strerror(errno));
        return release(model, cli_library_error());
    }
    if (cli_check_outputs(&opts) != EM_OK)
        return release(model, cli_library_error());

    if (text) {
        cli_text_options t = {
            .model_path = model_path,
            .data_spec = data_spec,
            .test_spec = test_spec,
            .seq_len = seq_len,
            .steps = steps,
            .eval_every = eval_every,
            .eval_bytes = eval_bytes,
            .val_chunk = val_chunk,
            .sequential = windows == 1,
            .val_fraction = opts.val_split,
            .warmup_auto = warmup_auto,
        };
        return train_text_main(&t, model, &opts);
    }

    int exit_status = EXIT_LIBRARY_ERROR;
    em_dataset *train = NULL, *test = NULL;
    if (cli_open_data(data_spec, test_spec, (int)label_column, false, &train, &test) != EM_OK)
        goto fail;
    if (cli_fit_dataset(model, model_path, train) != EM_OK)
        goto fail;
    if (test && cli_fit_dataset(model, model_path, test) != EM_OK)
        goto fail;

    printf("model %s: %lld parameters; data %s: %lld train, %lld test; %s lr %g, batch %lld, "
           "%d thread%s\n",
           model_path, (long long)em_model_param_count(model), data_spec, (long long)train->count,
           test ? (long long)test->count : 0LL, em_optim_name(kind), (double)opts.optim.lr,
           (long long)run.batch, em_num_threads(), em_num_threads() == 1 ? "" : "s");
    char regularisation[512];
    cli_training_describe(&opts, regularisation, sizeof regularisation);
    if (regularisation[0])
        printf("with %s\n", regularisation);
    fflush(stdout);

    em_train_result result;
    int stopped = cli_train_stoppable(model, train, test, &opts, &result);
    if (stopped >= 0) {
        exit_status = stopped;
        goto done;
    }
    print_final(&result, test);
    if (result.early_stopped)
        printf("early stopping: no lower validation loss in the last %d epochs\n", opts.patience);
    if (result.restored_epoch > 0)
        printf("kept the weights of epoch %d (lowest validation loss)\n", result.restored_epoch);
    cli_report_outputs(&opts);
    exit_status = EXIT_OK;
    goto done;

fail:
    fflush(stdout);
    cli_library_error();
done:
    em_dataset_free(test);
    em_dataset_free(train);
    em_model_free(model);
    return exit_status;
}
