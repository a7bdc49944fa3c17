// Tests for this layer are being written.
#include <gtest/gtest.h>
