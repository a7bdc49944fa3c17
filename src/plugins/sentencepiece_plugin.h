// The C interface of lcq's SentencePiece plugin (sentencepiece_plugin.cpp).
//
// Why a plugin: Debian's libsentencepiece carries its own copy of protobuf-lite 3.14 and
// exports those symbols, while libtorch links the system libprotobuf 3.21. Loaded into one
// process with ordinary linking, the two copies interpose each other's symbols and the
// program crashes before main(). The plugin is the only thing linked against
// libsentencepiece; lcq loads it with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), so its protobuf
// stays private. Plain C types only, so no C++ object crosses the boundary.
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lcq_spm lcq_spm;

// Piece types, as in sentencepiece_model.proto.
enum { LCQ_SPM_NORMAL = 1, LCQ_SPM_UNKNOWN = 2, LCQ_SPM_CONTROL = 3, LCQ_SPM_USER_DEFINED = 4,
       LCQ_SPM_UNUSED = 5, LCQ_SPM_BYTE = 6 };

// Returns NULL and writes a message to err on failure.
lcq_spm* lcq_spm_load(const char* proto, size_t size, char* err, size_t err_size);
void lcq_spm_free(lcq_spm* sp);

int lcq_spm_piece_size(const lcq_spm* sp);
// The piece text stays valid until lcq_spm_free.
const char* lcq_spm_piece(const lcq_spm* sp, int id, size_t* size);
float lcq_spm_score(const lcq_spm* sp, int id);
int lcq_spm_type(const lcq_spm* sp, int id);
// Special ids: 0 unk, 1 bos, 2 eos, 3 pad (-1 when the model has none).
int lcq_spm_special_id(const lcq_spm* sp, int which);

// Encodes text into ids; *count gets the number of ids. Returns 0 on success. The ids stay
// valid until the next call on the same handle (a handle is not for concurrent use).
int lcq_spm_encode(lcq_spm* sp, const char* text, size_t size, const int** ids, size_t* count,
                   char* err, size_t err_size);

#ifdef __cplusplus
}
#endif
