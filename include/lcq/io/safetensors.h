// The safetensors container: an 8-byte little-endian header length, a JSON header mapping
// each tensor name to {dtype, shape, data_offsets} (offsets relative to the byte buffer that
// follows the header), an optional "__metadata__" string map, then the raw tensor bytes.
// Reading maps the file and returns views into it; writing streams the tensors through an
// AtomicFile, so a failed write never leaves a half-written file behind.
#pragma once

#include "lcq/core/mapped_file.h"
#include "lcq/io/tensor.h"
#include "lcq/io/writers.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::io {

struct SafetensorsFile {
  std::string path;
  std::vector<TensorView> tensors;              // names as stored, ordered by data offset
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::shared_ptr<const void> keepalive;        // the mapping the views point into

  const TensorView* find(const std::string& name) const;
};

// Accepted dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8. Throws lcq::Error naming the
// file for anything malformed (header length past the end of the file, bad JSON, unknown
// dtype, offsets outside the buffer or overlapping, offsets that disagree with the shape).
SafetensorsFile read_safetensors(const std::string& path);
// The same from a file's bytes (errors and SafetensorsFile::path name file->path()).
SafetensorsFile read_safetensors(std::shared_ptr<const MappedFile> file);

// Writes `tensors` under their names as given. f32 sources are converted to F32, F16 or BF16;
// raw sources are stored as they are (any dtype read_safetensors accepts). Tensors are laid out
// by decreasing element size and otherwise in the given order, so every tensor is aligned to
// its element size; the header is padded with spaces to a multiple of 8 bytes.
void write_safetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors spelling of a dtype ("F32", "BF16", ...); throws for types it cannot hold.
const char* safetensors_dtype_name(DType t);

}  // namespace lcq::io
