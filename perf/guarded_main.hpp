// guarded_main: the mains of the perf harnesses run their body through it, so an exception that
// escapes (an allocation or a library failure) ends in a one-line message and EXIT_FAILURE, not
// std::terminate.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

namespace ringhub {

inline int guarded_main(std::string_view program, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return EXIT_FAILURE;
  }
}

}  // namespace ringhub
