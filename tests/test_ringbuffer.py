"""runtime_py.ringbuffer: FIFO semantics, wrap-around, overflow policies."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from runtime_py.ringbuffer import RingBuffer, RingBufferOverflow


def test_fifo_with_wraparound():
    rb = RingBuffer(5)
    rb.write(np.arange(4))
    np.testing.assert_array_equal(rb.read(3), [0, 1, 2])
    rb.write(np.arange(4, 8))  # wraps around the end of the storage
    assert (rb.available, rb.free) == (5, 0)
    np.testing.assert_array_equal(rb.peek(5), [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(rb.read(5), [3, 4, 5, 6, 7])
    assert rb.available == 0


def test_zero_and_one_sample_blocks_and_dtype():
    rb = RingBuffer(3, dtype=np.int16)
    assert rb.write(np.zeros(0)) == 0
    rb.write(np.array([7]))
    assert rb.read(1).dtype == np.int16
    assert rb.read(0).shape == (0,)


def test_error_policy_refuses_and_keeps_content():
    rb = RingBuffer(4)
    rb.write([1, 2, 3])
    with pytest.raises(RingBufferOverflow, match="drop_oldest"):
        rb.write([4, 5])
    np.testing.assert_array_equal(rb.peek(3), [1, 2, 3])
    with pytest.raises(ValueError, match="only 3"):
        rb.read(4)


def test_drop_oldest_counts_drops():
    rb = RingBuffer(4, overflow="drop_oldest")
    rb.write([1, 2, 3])
    assert rb.write([4, 5]) == 1
    np.testing.assert_array_equal(rb.peek(4), [2, 3, 4, 5])
    assert rb.write(np.arange(10, 20)) == 10  # 4 buffered + 6 of the block
    np.testing.assert_array_equal(rb.read(4), [16, 17, 18, 19])
    assert rb.dropped == 11


def test_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)
    with pytest.raises(ValueError, match="overflow"):
        RingBuffer(4, overflow="wrap")
    with pytest.raises(ValueError, match="1-D"):
        RingBuffer(4).write(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        RingBuffer(4).read(-1)


ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 40)),
    st.tuples(st.just("read"), st.integers(0, 40)),
    st.tuples(st.just("skip"), st.integers(0, 10)),
    st.tuples(st.just("clear"), st.just(0)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 32), policy=st.sampled_from(["error", "drop_oldest"]), ops=ops)
def test_matches_reference_list(capacity, policy, ops):
    rb = RingBuffer(capacity, dtype=np.int64, overflow=policy)
    ref, counter, dropped = [], 0, 0
    for op, n in ops:
        if op == "write":
            block = np.arange(counter, counter + n)
            counter += n
            if len(ref) + n > capacity and policy == "error":
                with pytest.raises(RingBufferOverflow):
                    rb.write(block)
                continue
            ref.extend(block.tolist())
            over = max(0, len(ref) - capacity)
            dropped += over
            del ref[:over]
            assert rb.write(block) == over
        elif op in ("read", "skip"):
            if n > len(ref):
                with pytest.raises(ValueError):
                    rb.read(n) if op == "read" else rb.skip(n)
                continue
            if op == "read":
                assert rb.read(n).tolist() == ref[:n]
            else:
                rb.skip(n)
            del ref[:n]
        else:
            rb.clear()
            ref.clear()
        assert rb.available == len(ref) and rb.free == capacity - len(ref)
        assert rb.peek(len(ref)).tolist() == ref
    assert rb.dropped == dropped
