/* Pieces that several commands of the ember tool share: reporting library errors and
 * matching a dataset to a model's input. */
#ifndef EMBER_TOOLS_CLI_COMMON_H
#define EMBER_TOOLS_CLI_COMMON_H

#include "ember.h"

/* Prints "ember: <last library error>" to stderr; returns EXIT_LIBRARY_ERROR. */
int cli_library_error(void);

/* Makes ds's items the shape of the model's input: a reshape when only the layout
 * differs (784 values vs 1x28x28), otherwise an error naming both shapes. Also checks
 * that the labels fit the model's outputs. */
int cli_fit_dataset(const em_model *m, const char *model_name, em_dataset *ds);

/* True when spec names a file ("idx:...", "csv:...") rather than a named dataset with
 * its own train and test splits. */
bool cli_spec_is_file(const char *spec);

/* Fails early, before hours of training, when `path` (given with --option) cannot be
 * created: its directory is missing or read-only, or it names a directory. */
int cli_check_writable(const char *option, const char *path);

#endif
