"""A BERT-shaped question-answering ONNX graph whose answers are designed: a stand-in for BERT-Large in tests.

It has the MLPerf BERT's interface: three int64 inputs ``[N, L]`` (token ids, attention mask, segment ids, named
as the reference's export or as Hugging Face exports name them) and two float32 outputs ``output_start_logits``
and ``output_end_logits`` ``[N, L]``. Inside: word, position and segment embeddings summed into a small hidden
state, then a QA head (MatMul + bias) giving two logits per token, and padding pushed to -10000 through the mask.

The logits are designed, not learned: hidden unit 0 of a token's word embedding is its start logit and unit 1 its
end logit (``start_scores``/``end_scores`` by token id, 0 for the rest); the other units hold seeded noise that the
QA head ignores, and position and segment embeddings are zero in the two units the head reads. So a span opens at
the context token with the highest start score and closes at the one with the highest end score, which lets a test
say in advance what the model answers. ``width`` sets the hidden size (16: a few kilobytes per thousand tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["HF_INPUTS", "REFERENCE_INPUTS", "build_bert_standin"]

OPSET = 13
#: Input names of the MLPerf reference's ONNX export, and of the Hugging Face style exports.
REFERENCE_INPUTS = ("input_ids", "input_mask", "segment_ids")
HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build_bert_standin(
    vocab_size: int,
    start_scores: Mapping[int, float],
    end_scores: Mapping[int, float],
    *,
    seq_length: int = 384,
    input_names: Sequence[str] = REFERENCE_INPUTS,
    width: int = 16,
    seed: int = 0,
) -> bytes:
    """The serialized model; token ids outside ``start_scores``/``end_scores`` score 0."""
    if width < 2:
        raise ValueError("width must leave room for the two units the QA head reads")
    rng = np.random.default_rng(seed)
    words = np.zeros((vocab_size, width), np.float32)
    words[:, 2:] = rng.standard_normal((vocab_size, width - 2), dtype=np.float32)
    for token, score in start_scores.items():
        words[token, 0] = score
    for token, score in end_scores.items():
        words[token, 1] = score
    positions = np.zeros((seq_length, width), np.float32)
    positions[:, 2:] = rng.standard_normal((seq_length, width - 2), dtype=np.float32)
    segments = np.zeros((2, width), np.float32)
    segments[:, 2:] = rng.standard_normal((2, width - 2), dtype=np.float32)
    head = np.zeros((width, 2), np.float32)
    head[0, 0] = head[1, 1] = 1.0
    ids, mask, segment = input_names
    inits = [
        numpy_helper.from_array(words, "word_embeddings"),
        numpy_helper.from_array(positions[None], "position_embeddings"),
        numpy_helper.from_array(segments, "token_type_embeddings"),
        numpy_helper.from_array(head, "qa_outputs.weight"),
        numpy_helper.from_array(np.zeros(2, np.float32), "qa_outputs.bias"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(-10000.0, np.float32), "padding_logit"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "split"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_embeddings", ids], ["word"]),
        helper.make_node("Gather", ["token_type_embeddings", segment], ["type"]),
        helper.make_node("Add", ["word", "type"], ["word_type"]),
        helper.make_node("Add", ["word_type", "position_embeddings"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "qa_outputs.weight"], ["qa"]),
        helper.make_node("Add", ["qa", "qa_outputs.bias"], ["qa_logits"]),
        # (1 - mask) * -10000, broadcast over the two logits: padding never wins.
        helper.make_node("Cast", [mask], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask_float"], ["pad"]),
        helper.make_node("Mul", ["pad", "padding_logit"], ["pad_logit"]),
        helper.make_node("Unsqueeze", ["pad_logit", "last_axis"], ["pad_logit3"]),
        helper.make_node("Add", ["qa_logits", "pad_logit3"], ["logits"]),
        helper.make_node("Split", ["logits", "split"], ["start3", "end3"], axis=2),
        helper.make_node("Squeeze", ["start3", "last_axis"], ["output_start_logits"]),
        helper.make_node("Squeeze", ["end3", "last_axis"], ["output_end_logits"]),
    ]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "last_axis"))
    graph = helper.make_graph(
        nodes,
        "bert_squad_standin",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", seq_length]) for name in input_names],
        [
            helper.make_tensor_value_info("output_start_logits", TensorProto.FLOAT, ["batch", seq_length]),
            helper.make_tensor_value_info("output_end_logits", TensorProto.FLOAT, ["batch", seq_length]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytest-mlperf")
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
