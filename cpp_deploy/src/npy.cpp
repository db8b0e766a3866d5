#include "emotion_mx/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "emotion_mx/predictor.h"  // read_file

namespace emotion_mx {
namespace {

// Value of `key` in the header dict, e.g. "'<f4'" or "False" or "(1, 20, 16)".
std::string header_field(const std::string& header, const std::string& key,
                         const std::string& path) {
  auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw Error(path + ": .npy header lacks '" + key + "'");
  auto colon = header.find(':', k);
  if (colon == std::string::npos) throw Error(path + ": malformed .npy header");
  auto start = header.find_first_not_of(' ', colon + 1);
  std::size_t end;
  if (header[start] == '(') {
    end = header.find(')', start);
    if (end == std::string::npos) throw Error(path + ": malformed .npy shape");
    ++end;
  } else {
    end = header.find_first_of(",}", start);
  }
  return header.substr(start, end - start);
}

bool little_endian_host() {
  const uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

}  // namespace

NpyArray load_npy(const std::string& path) {
  const std::string bytes = read_file(path);
  static const char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0)
    throw Error(path + ": not a .npy file");
  const unsigned major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(path + ": truncated .npy header");
    for (int k = 3; k >= 0; --k) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + k]);
    offset = 12;
  } else {
    throw Error(path + ": unsupported .npy version " + std::to_string(major));
  }
  if (offset + header_len > bytes.size()) throw Error(path + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  offset += header_len;

  std::string descr = header_field(header, "descr", path);
  if (descr != "'<f4'" && !(descr == "'=f4'" && little_endian_host()))
    throw Error(path + ": dtype " + descr + " is not float32 little-endian ('<f4'); save with "
                "np.save(path, x.astype('<f4'))");
  if (header_field(header, "fortran_order", path) != "False")
    throw Error(path + ": Fortran-ordered array; save a C-contiguous array (np.ascontiguousarray)");

  NpyArray out;
  std::string shape = header_field(header, "shape", path);  // "(1, 20, 16)" / "(5,)" / "()"
  std::size_t count = 1;
  for (std::size_t i = 1; i < shape.size();) {
    std::size_t j = shape.find_first_of(",)", i);
    std::string tok = shape.substr(i, j - i);
    tok.erase(0, tok.find_first_not_of(' '));
    if (!tok.empty()) {
      char* end = nullptr;
      unsigned long d = std::strtoul(tok.c_str(), &end, 10);
      if (*end != '\0' || d > std::numeric_limits<uint32_t>::max())
        throw Error(path + ": bad .npy shape " + shape);
      out.shape.push_back(static_cast<uint32_t>(d));
      count *= d;
    }
    i = j + 1;
  }
  if (bytes.size() - offset != count * sizeof(float))
    throw Error(path + ": holds " + std::to_string(bytes.size() - offset) + " data bytes, shape " +
                shape + " needs " + std::to_string(count * sizeof(float)));
  if (!little_endian_host()) throw Error("big-endian hosts are not supported");
  out.data.resize(count);
  if (count) std::memcpy(out.data.data(), bytes.data() + offset, count * sizeof(float));
  return out;
}

void save_npy(const std::string& path, const std::vector<uint32_t>& shape, const std::vector<float>& data) {
  std::size_t count = 1;
  std::string dims;
  for (auto d : shape) {
    count *= d;
    dims += std::to_string(d) + ", ";
  }
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // "(5,)" keeps its comma
  if (count != data.size()) throw Error(path + ": shape does not match the data to write");
  if (!little_endian_host()) throw Error("big-endian hosts are not supported");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw Error(path + ": .npy header too long");
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size() & 0xFF);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error("cannot write " + path);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
    if (!f) throw Error("cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error("cannot write " + path);
  }
}

}  // namespace emotion_mx
