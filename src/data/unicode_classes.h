/* Internal: the Unicode classes GPT-2's pre-tokenizer tells apart (src/data/bpe.c). */
#ifndef EMBER_DATA_UNICODE_CLASSES_H
#define EMBER_DATA_UNICODE_CLASSES_H

#include <stdbool.h>
#include <stdint.h>

typedef enum em_unicode_class {
    EM_UNICODE_OTHER = 0,
    EM_UNICODE_LETTER, /* \p{L} */
    EM_UNICODE_NUMBER, /* \p{N} */
    EM_UNICODE_SPACE   /* \s */
} em_unicode_class;

/* The class of a code point (generated tables: src/data/unicode_classes.c). */
em_unicode_class em_unicode_class_of(uint32_t cp);

#endif
