#!/usr/bin/env bash
# The bad-input catalogue: what a careless or hostile user hands every reader and command.
# Each case must end with a non-zero exit code (1 or 2, never a signal or a timeout) and one
# line on stderr starting with "error: " that names the file, field or value (the expected text
# is given per case); no LibTorch backtrace, no second error line.
#
#   bash tests/cli/bad_inputs.sh build/peft . build/tests/bad_inputs [filter]
set -u
PEFT=$(readlink -f "$1")
SRC=$(readlink -f "$2")
OUT=$3
FILTER=${4:-}
rm -rf "$OUT" && mkdir -p "$OUT" && cd "$OUT" || exit 1
export OMP_NUM_THREADS=1

n_pass=0
n_fail=0
failed=()

# check NAME EXPECTED CMD...: runs CMD and checks the outcome described above.
check() {
  local name=$1 expect=$2
  shift 2
  [[ -n "$FILTER" && "$name" != *"$FILTER"* ]] && return 0
  local rc
  timeout 120 "$@" >"$OUT/last.out" 2>"$OUT/last.err" </dev/null
  rc=$?
  local why=""
  local errors
  errors=$(grep -c '^error: ' "$OUT/last.err")
  local last
  last=$(grep -v '^\s*$' "$OUT/last.err" | tail -n 1)
  if [[ $rc -eq 0 ]]; then why="exit code 0"
  elif [[ $rc -eq 124 ]]; then why="timed out"
  elif [[ $rc -ge 128 ]]; then why="killed by signal $((rc - 128))"
  elif [[ $rc -ne 1 && $rc -ne 2 ]]; then why="exit code $rc"
  elif [[ $errors -ne 1 ]]; then why="$errors 'error:' lines"
  elif [[ "$last" != error:* ]]; then why="the last line is not the error"
  elif grep -q -e 'Exception raised from' -e 'frame #' -e 'terminate called' -e '\[json.exception' \
         -e 'c10::' -e 'what():' "$OUT/last.err"; then why="a raw library message"
  elif [[ "$last" != *"$expect"* ]]; then why="the error does not name '$expect'"
  fi
  if [[ -z "$why" ]]; then
    n_pass=$((n_pass + 1))
  else
    n_fail=$((n_fail + 1))
    failed+=("$name")
    echo "FAIL $name: $why (exit $rc)"
    echo "     \$ ${*}"
    sed 's/^/     | /' "$OUT/last.err" | head -n 8
  fi
}

# ------------------------------------------------------------------------------ valid inputs
# A Hugging Face folder (the bundled llama2.c model converted), a trained LoRA adapter, data.
"$PEFT" convert "$SRC/models/stories260K/stories260K.bin" base --tokenizer "$SRC/models/stories260K/tok512.bin" \
  >/dev/null 2>&1 || { echo "setup: convert failed"; exit 1; }
printf 'text\n' >data.csv
for i in $(seq 1 24); do printf '"Once upon a time there was a cat number %d."\n' "$i" >>data.csv; done
cat >run.yaml <<EOF
model: base
method: lora
task: causal_lm
train_file: data.csv
text_column: text
max_length: 32
r: 4
lora_alpha: 8
max_steps: 2
per_device_train_batch_size: 4
save_steps: 1
logging_steps: 1
output_dir: run
EOF
"$PEFT" train run.yaml >/dev/null 2>&1 || { echo "setup: train failed"; cat run/*.log 2>/dev/null; exit 1; }
[[ -f run/adapter/adapter_config.json ]] || { echo "setup: no adapter in run/adapter"; exit 1; }
ADAPTER=run/adapter
GGUF="$SRC/tests/fixtures/gguf/models/stories260K_f32.gguf"

# fresh COPY NAME: a copy of the base folder to break.
fresh_base() { rm -rf "$1" && cp -r base "$1"; }
fresh_adapter() { rm -rf "$1" && mkdir -p "$1" && cp "$ADAPTER"/adapter_config.json "$ADAPTER"/adapter_model.safetensors "$1"/; }
# set_json FILE KEY VALUE: rewrite one top-level field of a JSON file (the value is raw JSON).
set_json() {
  local file=$1 key=$2 value=$3
  local body
  body=$(tr -d '\n' <"$file")
  if grep -q "\"$key\"" <<<"$body"; then
    body=$(sed -E "s/\"$key\": *(\"[^\"]*\"|\[[^]]*\]|[^,}]*)/\"$key\": $value/" <<<"$body")
  else
    body=$(sed -E "s/^\{/{\"$key\": $value, /" <<<"$body")
  fi
  printf '%s\n' "$body" >"$file"
}
deep() { head -c "$1" /dev/zero | tr '\0' "$2"; }
yaml_with() {  # yaml_with FILE KEY: VALUE ...: run.yaml with keys replaced/added
  local file=$1
  shift
  sed "s#^output_dir: .*#output_dir: out_${file%.yaml}#" run.yaml >"$file"
  local kv
  for kv in "$@"; do
    local k=${kv%%:*}
    sed -i "/^$k:/d" "$file"
    printf '%s\n' "$kv" >>"$file"
  done
}

# ============================================================================ config.json
cfg_case() {  # cfg_case NAME EXPECT KEY VALUE: base with one config.json field set; generate on it
  fresh_base "m_$1"
  set_json "m_$1/config.json" "$3" "$4"
  check "config.$1" "$2" "$PEFT" generate "m_$1" -p "Once" -n 2
}
cfg_case layers_huge num_hidden_layers num_hidden_layers 1000000000
cfg_case layers_zero num_hidden_layers num_hidden_layers 0
cfg_case layers_negative num_hidden_layers num_hidden_layers -3
cfg_case layers_string num_hidden_layers num_hidden_layers '"five"'
cfg_case layers_float num_hidden_layers num_hidden_layers 5.5
cfg_case layers_more num_hidden_layers num_hidden_layers 40
cfg_case vocab_huge vocab_size vocab_size 1000000000000
cfg_case vocab_smaller vocab_size vocab_size 100
cfg_case vocab_negative vocab_size vocab_size -1
cfg_case hidden_huge hidden_size hidden_size 100000000
cfg_case hidden_zero hidden_size hidden_size 0
cfg_case hidden_mismatch hidden_size hidden_size 96
cfg_case heads_not_dividing num_attention_heads num_attention_heads 7
cfg_case heads_huge num_attention_heads num_attention_heads 100000000
cfg_case kv_heads_not_dividing num_key_value_heads num_key_value_heads 3
cfg_case intermediate_huge intermediate_size intermediate_size 1000000000000
cfg_case intermediate_mismatch intermediate_size intermediate_size 100
cfg_case max_positions_huge max_position_embeddings max_position_embeddings 100000000000
cfg_case model_type_unknown model_type model_type '"not_a_model"'
cfg_case model_type_number model_type model_type 7
cfg_case rope_theta_string rope_theta rope_theta '"fast"'
cfg_case rms_eps_negative rms_norm_eps rms_norm_eps -1
cfg_case hidden_act_unknown hidden_act hidden_act '"swishy"'
cfg_case rope_scaling_unknown rope_scaling rope_scaling '{"rope_type": "warp", "factor": 2.0}'
cfg_case tie_string tie_word_embeddings tie_word_embeddings '"yes"'
cfg_case head_dim_odd head_dim head_dim 7

fresh_base m_cfg_invalid && printf '{"model_type": "llama", "hidden_size": 64,,}\n' >m_cfg_invalid/config.json
check config.invalid_json "m_cfg_invalid/config.json" "$PEFT" generate m_cfg_invalid -p Once -n 2
fresh_base m_cfg_trunc && head -c 40 base/config.json >m_cfg_trunc/config.json
check config.truncated "m_cfg_trunc/config.json" "$PEFT" generate m_cfg_trunc -p Once -n 2
fresh_base m_cfg_empty && : >m_cfg_empty/config.json
check config.empty "m_cfg_empty/config.json" "$PEFT" generate m_cfg_empty -p Once -n 2
fresh_base m_cfg_array && printf '[1, 2, 3]\n' >m_cfg_array/config.json
check config.array "m_cfg_array/config.json" "$PEFT" generate m_cfg_array -p Once -n 2
fresh_base m_cfg_deep && { printf '{"model_type": "llama", "x": '; deep 200000 '['; deep 200000 ']'; printf '}\n'; } >m_cfg_deep/config.json
check config.deep_nesting "m_cfg_deep/config.json" "$PEFT" generate m_cfg_deep -p Once -n 2
check config.deep_nesting_info "m_cfg_deep/config.json" "$PEFT" info m_cfg_deep
fresh_base m_cfg_deepobj && { printf '{"model_type": "llama", "x": '; for _ in $(seq 1 2000); do printf '{"a":'; done; printf '1'; deep 2000 '}'; printf '}\n'; } >m_cfg_deepobj/config.json
check config.deep_objects "m_cfg_deepobj/config.json" "$PEFT" generate m_cfg_deepobj -p Once -n 2
fresh_base m_cfg_dir && rm m_cfg_dir/config.json && mkdir m_cfg_dir/config.json
check config.is_folder "m_cfg_dir" "$PEFT" generate m_cfg_dir -p Once -n 2
fresh_base m_cfg_binary && head -c 4096 /dev/urandom >m_cfg_binary/config.json
check config.binary "m_cfg_binary/config.json" "$PEFT" generate m_cfg_binary -p Once -n 2
fresh_base m_cfg_nul && printf '{"model_type": "llama"\0}' >m_cfg_nul/config.json
check config.nul_byte "m_cfg_nul/config.json" "$PEFT" generate m_cfg_nul -p Once -n 2
fresh_base m_cfg_nan && sed 's/"rms_norm_eps": [^,}]*/"rms_norm_eps": NaN/' base/config.json >m_cfg_nan/config.json
check config.nan_literal "m_cfg_nan/config.json" "$PEFT" generate m_cfg_nan -p Once -n 2
fresh_base m_cfg_layers_train && set_json m_cfg_layers_train/config.json num_hidden_layers 1000000000
yaml_with y_cfg_layers.yaml "model: m_cfg_layers_train"
check config.layers_huge_train num_hidden_layers "$PEFT" train y_cfg_layers.yaml
check config.layers_huge_merge num_hidden_layers "$PEFT" merge m_cfg_layers_train "$ADAPTER" merged_layers

# ======================================================================== model.safetensors
st_case() {  # st_case NAME EXPECT: the file m_NAME/model.safetensors was broken by the caller
  check "safetensors.$1" "$2" "$PEFT" generate "m_$1" -p Once -n 2
}
W=base/model.safetensors
fresh_base m_st_trunc && head -c 5000 "$W" >m_st_trunc/model.safetensors && st_case st_trunc model.safetensors
fresh_base m_st_empty && : >m_st_empty/model.safetensors && st_case st_empty model.safetensors
fresh_base m_st_short && head -c 5 "$W" >m_st_short/model.safetensors && st_case st_short model.safetensors
fresh_base m_st_hdrlen && { printf '\xff\xff\xff\xff\xff\xff\xff\x7f'; tail -c +9 "$W"; } >m_st_hdrlen/model.safetensors && st_case st_hdrlen model.safetensors
fresh_base m_st_garbage && head -c 100000 /dev/urandom >m_st_garbage/model.safetensors && st_case st_garbage model.safetensors
fresh_base m_st_text && printf 'this is not a weights file\n' >m_st_text/model.safetensors && st_case st_text model.safetensors
fresh_base m_st_dtype && sed 's/"dtype":"F32"/"dtype":"Q99"/' "$W" >m_st_dtype/model.safetensors && st_case st_dtype model.safetensors
fresh_base m_st_int && sed 's/"dtype":"F32"/"dtype":"I32"/' "$W" >m_st_int/model.safetensors && st_case st_int "int32 values"
fresh_base m_st_deep && { H=$(printf '{"a":%s1%s}' "$(deep 3000 '[')" "$(deep 3000 ']')"); L=${#H}; printf "$(printf '\\x%02x' $((L & 255)) $(((L >> 8) & 255)) 0 0 0 0 0 0)"; printf '%s' "$H"; } >m_st_deep/model.safetensors && st_case st_deep model.safetensors
fresh_base m_st_dir && rm m_st_dir/model.safetensors && mkdir m_st_dir/model.safetensors && st_case st_dir model.safetensors
fresh_base m_st_missing && rm m_st_missing/model.safetensors && st_case st_missing m_st_missing
fresh_base m_st_renamed && sed 's/model.embed_tokens.weight/model.embed_tokens.weigh_/' "$W" >m_st_renamed/model.safetensors && st_case st_renamed model.embed_tokens.weight
fresh_base m_st_nan && cp "$W" m_st_nan/model.safetensors && {
  # The float 1.0 nowhere, so overwrite 16 bytes in the middle of the data with NaN patterns.
  SIZE=$(stat -c %s "$W"); printf '\x00\x00\xc0\x7f\x00\x00\xc0\x7f\x00\x00\xc0\x7f\x00\x00\xc0\x7f' |
    dd of=m_st_nan/model.safetensors bs=1 seek=$((SIZE - 4096)) conv=notrunc status=none; } && st_case st_nan "NaN or infinite"
fresh_base m_st_inf && cp "$W" m_st_inf/model.safetensors && {
  SIZE=$(stat -c %s "$W"); printf '\x00\x00\x80\x7f' |
    dd of=m_st_inf/model.safetensors bs=1 seek=$((SIZE - 64)) conv=notrunc status=none; } && st_case st_inf "NaN or infinite"
fresh_base m_st_index && printf '{"weight_map": {"model.embed_tokens.weight": "nowhere.safetensors"}}\n' >m_st_index/model.safetensors.index.json && rm m_st_index/model.safetensors && st_case st_index nowhere.safetensors
fresh_base m_st_index_bad && printf '{"weight_map": [1,2' >m_st_index_bad/model.safetensors.index.json && rm m_st_index_bad/model.safetensors && st_case st_index_bad model.safetensors.index.json

# ========================================================================= tokenizer files
tok_case() {  # the tokenizer.json of m_NAME was broken by the caller
  check "tokenizer.$1" "$2" "$PEFT" generate "m_$1" -p Once -n 2
}
fresh_base m_tok_invalid && printf '{"model": {"type": "BPE",' >m_tok_invalid/tokenizer.json && tok_case tok_invalid tokenizer.json
fresh_base m_tok_empty && : >m_tok_empty/tokenizer.json && tok_case tok_empty tokenizer.json
fresh_base m_tok_deep && { printf '{"model": '; deep 150000 '['; deep 150000 ']'; printf '}'; } >m_tok_deep/tokenizer.json && tok_case tok_deep tokenizer.json
fresh_base m_tok_type && sed 's/"type": *"BPE"/"type": "Wordsmith"/' base/tokenizer.json >m_tok_type/tokenizer.json && tok_case tok_type tokenizer.json
fresh_base m_tok_nomodel && printf '{"version": "1.0"}\n' >m_tok_nomodel/tokenizer.json && tok_case tok_nomodel tokenizer.json
fresh_base m_tok_vocab_type && sed 's/"vocab": *{/"vocab": [/' base/tokenizer.json >m_tok_vocab_type/tokenizer.json && tok_case tok_vocab_type tokenizer.json
fresh_base m_tok_binary && head -c 5000 /dev/urandom >m_tok_binary/tokenizer.json && tok_case tok_binary tokenizer.json
fresh_base m_tok_cfg && printf '{"bos_token": ' >m_tok_cfg/tokenizer_config.json && tok_case tok_cfg tokenizer_config.json
fresh_base m_tok_cfg_deep && { printf '{"bos_token": '; deep 100000 '{'; } >m_tok_cfg_deep/tokenizer_config.json && tok_case tok_cfg_deep tokenizer_config.json
fresh_base m_tok_dir && rm m_tok_dir/tokenizer.json && mkdir m_tok_dir/tokenizer.json && tok_case tok_dir tokenizer.json
fresh_base m_tok_big && set_json m_tok_big/config.json vocab_size 300 && tok_case tok_big vocab_size

# ================================================================================== adapter
ad_case() {  # the adapter a_NAME was broken by the caller; generate with it
  check "adapter.$1" "$2" "$PEFT" generate base -a "a_$1" -p Once -n 2
}
fresh_adapter a_cfg_invalid && printf '{"peft_type": "LORA", "r": 4,' >a_cfg_invalid/adapter_config.json && ad_case cfg_invalid adapter_config.json
fresh_adapter a_cfg_deep && { printf '{"peft_type": "LORA", "target_modules": '; deep 200000 '['; deep 200000 ']'; printf '}'; } >a_cfg_deep/adapter_config.json && ad_case cfg_deep adapter_config.json
fresh_adapter a_r_huge && set_json a_r_huge/adapter_config.json r 1000000000 && ad_case r_huge "r"
fresh_adapter a_r_zero && set_json a_r_zero/adapter_config.json r 0 && ad_case r_zero "\`r\` should be a positive integer"
fresh_adapter a_r_negative && set_json a_r_negative/adapter_config.json r -4 && ad_case r_negative "\`r\` should be a positive integer"
fresh_adapter a_r_string && set_json a_r_string/adapter_config.json r '"four"' && ad_case r_string "'r'"
fresh_adapter a_r_other && set_json a_r_other/adapter_config.json r 8 && ad_case r_other "lora_A"
fresh_adapter a_alpha_string && set_json a_alpha_string/adapter_config.json lora_alpha '"big"' && ad_case alpha_string lora_alpha
fresh_adapter a_type_unknown && set_json a_type_unknown/adapter_config.json peft_type '"MAGIC"' && ad_case type_unknown peft_type
fresh_adapter a_type_number && set_json a_type_number/adapter_config.json peft_type 3 && ad_case type_number peft_type
fresh_adapter a_targets_none && set_json a_targets_none/adapter_config.json target_modules '["no_such_module"]' && ad_case targets_none no_such_module
fresh_adapter a_targets_number && set_json a_targets_number/adapter_config.json target_modules 12 && ad_case targets_number target_modules
fresh_adapter a_task_unknown && set_json a_task_unknown/adapter_config.json task_type '"DANCE"' && ad_case task_unknown task_type
fresh_adapter a_dropout && set_json a_dropout/adapter_config.json lora_dropout 1.5 && ad_case dropout lora_dropout
fresh_adapter a_layers && set_json a_layers/adapter_config.json layers_to_transform '[1000]' && ad_case layers layers_to_transform
fresh_adapter a_no_cfg && rm a_no_cfg/adapter_config.json && ad_case no_cfg a_no_cfg
fresh_adapter a_no_weights && rm a_no_weights/adapter_model.safetensors && ad_case no_weights a_no_weights
fresh_adapter a_w_trunc && head -c 3000 "$ADAPTER/adapter_model.safetensors" >a_w_trunc/adapter_model.safetensors && ad_case w_trunc adapter_model.safetensors
fresh_adapter a_w_garbage && head -c 3000 /dev/urandom >a_w_garbage/adapter_model.safetensors && ad_case w_garbage adapter_model.safetensors
fresh_adapter a_w_renamed && sed 's/lora_A/lora_Q/g' "$ADAPTER/adapter_model.safetensors" >a_w_renamed/adapter_model.safetensors && ad_case w_renamed lora_
fresh_adapter a_w_nan && cp "$ADAPTER/adapter_model.safetensors" a_w_nan/ && {
  SIZE=$(stat -c %s a_w_nan/adapter_model.safetensors); printf '\x00\x00\xc0\x7f' |
    dd of=a_w_nan/adapter_model.safetensors bs=1 seek=$((SIZE - 8)) conv=notrunc status=none; } && ad_case w_nan "lora_"
fresh_adapter a_w_dtype && sed 's/"dtype":"F32"/"dtype":"U8"/' "$ADAPTER/adapter_model.safetensors" >a_w_dtype/adapter_model.safetensors && ad_case w_dtype adapter_model.safetensors
check adapter.is_file adapter_config.json "$PEFT" generate base -a run/adapter/adapter_config.json -p Once -n 2
check adapter.missing no_such_adapter "$PEFT" generate base -a no_such_adapter -p Once -n 2
check adapter.is_model base "$PEFT" generate base -a base -p Once -n 2
check adapter.other_base "trained on" "$PEFT" merge "$SRC/tests/fixtures/models/llama_causal" "$ADAPTER" merged_other
check adapter.merge_r_huge "r" "$PEFT" merge base a_r_huge merged_r
check adapter.info_deep adapter_config.json "$PEFT" info a_cfg_deep

# ============================================================================= run configs
check yaml.missing no_such.yaml "$PEFT" train no_such.yaml
mkdir -p y_dir.yaml && check yaml.is_folder y_dir.yaml "$PEFT" train y_dir.yaml
printf 'model: base\nmethod: [lora\n' >y_invalid.yaml && check yaml.invalid y_invalid.yaml "$PEFT" train y_invalid.yaml
{ printf 'model: '; deep 100000 '['; } >y_deep_flow.yaml && check yaml.deep_flow y_deep_flow.yaml "$PEFT" train y_deep_flow.yaml
{ printf 'model:\n'; for _ in $(seq 1 5000); do printf -- '- '; done; printf 'x\n'; } >y_deep_seq.yaml && check yaml.deep_seq y_deep_seq.yaml "$PEFT" train y_deep_seq.yaml
{ printf 'a:\n'; for i in $(seq 1 400); do printf "%${i}sb$i:\n" ''; done; } >y_deep_indent.yaml && check yaml.deep_indent y_deep_indent.yaml "$PEFT" train y_deep_indent.yaml
head -c 3000 /dev/urandom >y_binary.yaml && check yaml.binary y_binary.yaml "$PEFT" train y_binary.yaml
printf -- '- a\n- b\n' >y_list.yaml && check yaml.list y_list.yaml "$PEFT" train y_list.yaml
printf 'method: lora\n' >y_nomodel.yaml && check yaml.no_model model "$PEFT" train y_nomodel.yaml
yaml_case() {  # yaml_case NAME EXPECT KEY: VALUE ...
  local name=$1 expect=$2
  shift 2
  yaml_with "y_$name.yaml" "$@"
  check "yaml.$name" "$expect" "$PEFT" train "y_$name.yaml"
}
yaml_case unknown_key learning_rat "learning_rat: 0.1"
yaml_case lr_string learning_rate "learning_rate: fast"
yaml_case lr_negative learning_rate "learning_rate: -0.1"
yaml_case lr_overflow "learning_rate" "learning_rate: 1e300" "max_steps: 4" "save_steps: 0"
yaml_case epochs_negative num_train_epochs "max_steps: -1" "num_train_epochs: -2"
yaml_case max_steps_float max_steps "max_steps: 2.5"
yaml_case batch_zero per_device_train_batch_size "per_device_train_batch_size: 0"
yaml_case batch_negative per_device_train_batch_size "per_device_train_batch_size: -4"
yaml_case accum_zero gradient_accumulation_steps "gradient_accumulation_steps: 0"
yaml_case method_unknown method "method: lorax"
yaml_case task_unknown task "task: dance"
yaml_case model_missing no_such_model "model: no_such_model"
yaml_case model_is_file data.csv "model: data.csv"
yaml_case model_llama2c stories260K.bin "model: $SRC/models/stories260K/stories260K.bin"
yaml_case data_missing no_such.csv "train_file: no_such.csv"
yaml_case data_folder base "train_file: base"
yaml_case r_huge "r" "r: 1000000000"
yaml_case r_zero "r" "r: 0"
yaml_case alpha_string lora_alpha "lora_alpha: big"
yaml_case targets_none no_such_proj "target_modules: [no_such_proj]"
yaml_case dtype_float16 float16 "dtype: float16"
yaml_case dtype_unknown dtype "dtype: float7"
yaml_case max_length_zero max_length "max_length: 0"
yaml_case lr_update_overflow learning_rate "learning_rate: 1e30" "max_steps: 4" "save_steps: 0"
yaml_case seed_string seed "seed: abc"
yaml_case warmup_ratio warmup_ratio "warmup_ratio: 3"
yaml_case scheduler lr_scheduler_type "lr_scheduler_type: zigzag"
yaml_case text_column_missing no_such_column "text_column: no_such_column"
yaml_case output_is_file data.csv "output_dir: data.csv"
yaml_case output_is_model base "output_dir: base"
yaml_case prompt_vt_huge num_virtual_tokens "method: prompt_tuning" "num_virtual_tokens: 1000000000"
yaml_case prompt_vt_zero num_virtual_tokens "method: prompt_tuning" "num_virtual_tokens: 0"
yaml_case prefix_vt_huge num_virtual_tokens "method: prefix_tuning" "num_virtual_tokens: 100000000"
yaml_case adalora_target_r target_r "method: adalora" "target_r: -1"
yaml_case qlora_quant bnb_4bit_quant_type "method: qlora" "bnb_4bit_quant_type: int3"
yaml_case on_nonfinite on_nonfinite "on_nonfinite: explode"
yaml_case invalid_utf8_policy invalid_utf8 "invalid_utf8: ignore"
yaml_case allow_nonfinite_type allow_nonfinite_weights "allow_nonfinite_weights: perhaps"
yaml_case eval_missing no_eval.csv "eval_file: no_eval.csv" "eval_steps: 1"
check yaml.override_not_kv "override" "$PEFT" train run.yaml nonsense
check yaml.override_unknown learning_rat "$PEFT" train run.yaml learning_rat=3
check yaml.override_deep "command line" "$PEFT" train run.yaml "target_modules=$(deep 5000 '[')"
check yaml.override_type max_steps "$PEFT" train run.yaml "max_steps=[1,2]"

# ===================================================================================== data
data_case() {  # data_case NAME EXPECT FILE: train on FILE (written by the caller)
  yaml_with "y_data_$1.yaml" "train_file: $3"
  check "data.$1" "$2" "$PEFT" train "y_data_$1.yaml"
}
: >d_empty.csv && data_case empty_csv d_empty.csv d_empty.csv
printf 'text\n' >d_header_only.csv && data_case header_only d_header_only.csv d_header_only.csv
printf 'text\n"unterminated quote\n' >d_quote.csv && data_case unterminated_quote d_quote.csv d_quote.csv
printf 'text\nhello \xff\xfe world\n' >d_utf8.csv && data_case invalid_utf8_csv "d_utf8.csv:2" d_utf8.csv
printf 'text\nhello\xc3\n' >d_utf8_cut.csv && data_case truncated_utf8_csv "d_utf8_cut.csv:2" d_utf8_cut.csv
printf 'other\nhello\n' >d_column.csv && data_case missing_column text d_column.csv
head -c 20000 /dev/urandom >d_binary.csv && data_case binary_csv d_binary.csv d_binary.csv
printf '{"text": "a"}\n{"text": \n' >d_bad.jsonl && data_case jsonl_bad_line "d_bad.jsonl:2" d_bad.jsonl
printf '{"text": "a"}\n[1,2]\n' >d_array.jsonl && data_case jsonl_not_object "d_array.jsonl:2" d_array.jsonl
{ printf '{"text": "a"}\n{"text": '; deep 200000 '['; deep 200000 ']'; printf '}\n'; } >d_deep.jsonl && data_case jsonl_deep "d_deep.jsonl:2" d_deep.jsonl
printf '{"text": "ok \xff"}\n' >d_utf8.jsonl && data_case jsonl_invalid_utf8 "d_utf8.jsonl" d_utf8.jsonl
printf '[{"text": "a"}, {"text": ' >d_array_trunc.json && data_case json_array_truncated d_array_trunc.json d_array_trunc.json
printf '{"text": "a"}\n{"tex": "b"}\n' >d_key.jsonl && data_case jsonl_missing_key "d_key.jsonl:2" d_key.jsonl
printf 'text\tlabel\nhello\n' >d_short.tsv && data_case tsv_short_row "d_short.tsv" d_short.tsv
mkdir -p d_folder.csv && data_case data_is_folder d_folder.csv d_folder.csv
# Classification data against a classifier run.
printf 'text,label\ngood,pos\nbad,neg\n' >d_cls.csv
printf 'text,label\ngood,pos\nbad,\n' >d_cls_empty_label.csv
cls_case() {
  yaml_with "y_cls_$1.yaml" "task: seq_cls" "train_file: $3" "label_column: label" "$4"
  check "data.cls_$1" "$2" "$PEFT" train "y_cls_$1.yaml"
}
cls_case empty_label "d_cls_empty_label.csv:3" d_cls_empty_label.csv "num_labels: 2"
cls_case label_column_missing no_label "d_cls.csv" "label_column: no_label"
cls_case num_labels_small num_labels d_cls.csv "num_labels: 1"
printf 'text,label\ngood,0\nbad,1\nugly,2\n' >d_cls_int.csv && cls_case label_out_of_range num_labels d_cls_int.csv "num_labels: 2"
printf 'EU B-ORG\nrejects\n' >d_ner.conll
yaml_with y_ner.yaml "task: token_cls" "train_file: d_ner.conll"
check data.conll_missing_tag "d_ner.conll:2" "$PEFT" train y_ner.yaml
printf 'EU B-ORG extra\tcols\n\xff\xfe O\n' >d_ner_utf8.conll
yaml_with y_ner_utf8.yaml "task: token_cls" "train_file: d_ner_utf8.conll"
check data.conll_invalid_utf8 "d_ner_utf8.conll:2" "$PEFT" train y_ner_utf8.yaml

# ============================================================================== llama2.c
L2C="$SRC/models/stories260K/stories260K.bin"
TOKBIN="$SRC/models/stories260K/tok512.bin"
head -c 1000 "$L2C" >l_trunc.bin && check llama2c.truncated l_trunc.bin "$PEFT" convert l_trunc.bin l_out1 --tokenizer "$TOKBIN"
head -c 20 "$L2C" >l_short.bin && check llama2c.header_only l_short.bin "$PEFT" convert l_short.bin l_out2 --tokenizer "$TOKBIN"
{ printf '\xff\xff\xff\x7f\x05\x00\x00\x00'; tail -c +9 "$L2C"; } >l_dim.bin && check llama2c.dim_huge l_dim.bin "$PEFT" convert l_dim.bin l_out3 --tokenizer "$TOKBIN"
{ head -c 8 "$L2C"; printf '\x00\xca\x9a\x3b'; tail -c +13 "$L2C"; } >l_layers.bin && check llama2c.layers_huge l_layers.bin "$PEFT" convert l_layers.bin l_out4 --tokenizer "$TOKBIN"
{ head -c 20 "$L2C"; printf '\xfe\xff\xff\xff'; tail -c +25 "$L2C"; } >l_vocab.bin && check llama2c.vocab_negative l_vocab.bin "$PEFT" convert l_vocab.bin l_out5 --tokenizer "$TOKBIN"
cp "$L2C" l_extra.bin && printf 'junk' >>l_extra.bin && check llama2c.trailing_bytes l_extra.bin "$PEFT" convert l_extra.bin l_out6 --tokenizer "$TOKBIN"
head -c 200 "$TOKBIN" >t_trunc.bin && check llama2c.tokenizer_truncated t_trunc.bin "$PEFT" convert "$L2C" l_out7 --tokenizer t_trunc.bin
head -c 3000 /dev/urandom >t_garbage.bin && check llama2c.tokenizer_garbage t_garbage.bin "$PEFT" convert "$L2C" l_out8 --tokenizer t_garbage.bin
{ head -c 4 "$TOKBIN"; printf '\x00\x00\x00\x00\xff\xff\xff\x7f'; } >t_len.bin && check llama2c.tokenizer_length_huge t_len.bin "$PEFT" convert "$L2C" l_out9 --tokenizer t_len.bin
# A well-formed tokenizer.bin of three entries: not this model's 512.
{ printf '\x04\x00\x00\x00'; for p in a b c; do printf '\x00\x00\x00\x00\x01\x00\x00\x00%s' "$p"; done; } >t_few.bin &&
  check llama2c.tokenizer_of_another_model vocab_size "$PEFT" convert "$L2C" l_out11 --tokenizer t_few.bin
check llama2c.tokenizer_missing no_tok.bin "$PEFT" convert "$L2C" l_out10 --tokenizer no_tok.bin
check llama2c.output_is_input stories260K.bin "$PEFT" convert "$L2C" "$L2C" --tokenizer "$TOKBIN"
check llama2c.output_holds_input "$SRC/models" "$PEFT" convert "$L2C" "$SRC/models" --tokenizer "$TOKBIN"
check llama2c.generate_direct "peft convert" "$PEFT" generate "$L2C" -p Once -n 2

# ===================================================================================== GGUF
head -c 3000 "$GGUF" >g_trunc.gguf && check gguf.truncated g_trunc.gguf "$PEFT" generate g_trunc.gguf -p Once -n 2
{ printf 'GGUF\x63\x00\x00\x00'; tail -c +9 "$GGUF"; } >g_version.gguf && check gguf.version g_version.gguf "$PEFT" generate g_version.gguf -p Once -n 2
{ head -c 8 "$GGUF"; printf '\xff\xff\xff\xff\xff\xff\xff\x0f'; tail -c +17 "$GGUF"; } >g_tensors.gguf && check gguf.tensor_count_huge g_tensors.gguf "$PEFT" generate g_tensors.gguf -p Once -n 2
{ head -c 16 "$GGUF"; printf '\xff\xff\xff\xff\xff\xff\xff\x0f'; tail -c +25 "$GGUF"; } >g_kv.gguf && check gguf.kv_count_huge g_kv.gguf "$PEFT" generate g_kv.gguf -p Once -n 2
{ head -c 24 "$GGUF"; printf '\xff\xff\xff\xff\xff\xff\xff\x7f'; tail -c +33 "$GGUF"; } >g_key.gguf && check gguf.key_length_huge g_key.gguf "$PEFT" generate g_key.gguf -p Once -n 2
sed 's/llama.block_count/llama.block_cnt__/' "$GGUF" >g_blocks.gguf && check gguf.no_block_count g_blocks.gguf "$PEFT" generate g_blocks.gguf -p Once -n 2
sed 's/token_embd.weight/token_embd.weigh_/' "$GGUF" >g_embd.gguf && check gguf.no_embedding g_embd.gguf "$PEFT" generate g_embd.gguf -p Once -n 2
head -c 3000 /dev/urandom | { printf 'GGUF\x03\x00\x00\x00'; cat; } >g_random.gguf && check gguf.random_body g_random.gguf "$PEFT" info g_random.gguf
check gguf.export_output_is_input stories260K_f32.gguf "$PEFT" merge "$GGUF" "$ADAPTER" "$GGUF" --format gguf

# ================================================================================ resuming
resume_case() {  # resume_case NAME EXPECT: run/checkpoint copy r_NAME broken by the caller
  check "resume.$1" "$2" "$PEFT" train run.yaml "output_dir=r_$1" max_steps=3 --resume "r_$1/checkpoint-1"
}
fresh_resume() { rm -rf "r_$1" && cp -r run "r_$1" && rm -rf "r_$1"/checkpoint-2; }
CK=checkpoint-1
fresh_resume state_invalid && printf '{"global_step": ' >r_state_invalid/$CK/trainer_state.json && resume_case state_invalid trainer_state.json
fresh_resume state_negative && set_json r_state_negative/$CK/trainer_state.json global_step -5 && resume_case state_negative global_step
fresh_resume state_past && set_json r_state_past/$CK/trainer_state.json global_step 100000 && resume_case state_past global_step
fresh_resume state_string && set_json r_state_string/$CK/trainer_state.json global_step '"one"' && resume_case state_string global_step
fresh_resume state_deep && { printf '{"global_step": 1, "log_history": '; deep 200000 '['; deep 200000 ']'; printf '}'; } >r_state_deep/$CK/trainer_state.json && resume_case state_deep trainer_state.json
fresh_resume state_missing && rm r_state_missing/$CK/trainer_state.json && resume_case state_missing trainer_state.json
fresh_resume opt_garbage && head -c 2000 /dev/urandom >r_opt_garbage/$CK/optimizer.pt && resume_case opt_garbage optimizer.pt
fresh_resume opt_trunc && head -c 300 run/$CK/optimizer.pt >r_opt_trunc/$CK/optimizer.pt && resume_case opt_trunc optimizer.pt
fresh_resume opt_empty && : >r_opt_empty/$CK/optimizer.pt && resume_case opt_empty optimizer.pt
fresh_resume rng_garbage && head -c 2000 /dev/urandom >r_rng_garbage/$CK/rng_state.safetensors && resume_case rng_garbage rng_state.safetensors
fresh_resume adapter_trunc && head -c 1000 run/$CK/adapter_model.safetensors >r_adapter_trunc/$CK/adapter_model.safetensors && resume_case adapter_trunc adapter_model.safetensors
check resume.missing_folder no_such_checkpoint "$PEFT" train run.yaml output_dir=r_missing max_steps=3 --resume no_such_checkpoint

# ============================================================================== commands
rm -rf base_copy && cp -r base base_copy
SUM_BEFORE=$(cat base_copy/* | md5sum)
check merge.output_is_base base_copy "$PEFT" merge base_copy "$ADAPTER" base_copy
[[ "$(cat base_copy/* | md5sum)" == "$SUM_BEFORE" ]] || { echo "FAIL merge.output_is_base: the base changed"; n_fail=$((n_fail + 1)); }
check merge.output_inside_base base_copy "$PEFT" merge base_copy "$ADAPTER" base_copy/merged
check merge.output_is_adapter "$ADAPTER" "$PEFT" merge base "$ADAPTER" "$ADAPTER"
check merge.output_holds_base "." "$PEFT" merge base_copy "$ADAPTER" .
check merge.no_adapter no_such_adapter "$PEFT" merge base no_such_adapter merged_x
check export.output_is_adapter "$ADAPTER" "$PEFT" export "$ADAPTER" "$ADAPTER/adapter_model.safetensors" --base base
check export.output_is_base base "$PEFT" export "$ADAPTER" base/model.safetensors --base base
check export.no_adapter no_such_adapter "$PEFT" export no_such_adapter out.gguf --base base
check export.base_missing no_such_base "$PEFT" export "$ADAPTER" out.gguf --base no_such_base
# float16 on the CPU: a clear refusal where the LibTorch build lacks it (1.13), a run where it has it.
if "$PEFT" generate base -p Once -n 2 --dtype float16 >/dev/null 2>&1; then n_pass=$((n_pass + 1))
else check generate.dtype_float16 float16 "$PEFT" generate base -p Once -n 2 --dtype float16; fi
check generate.dtype_unknown float7 "$PEFT" generate base -p Once -n 2 --dtype float7
check generate.model_missing no_such_model "$PEFT" generate no_such_model -p Once -n 2
check generate.model_dev_null /dev/null "$PEFT" generate /dev/null -p Once -n 2
mkdir -p empty_dir && check generate.model_empty_folder empty_dir "$PEFT" generate empty_dir -p Once -n 2
check info.model_missing no_such_model "$PEFT" info no_such_model
head -c 5000 /dev/urandom >random.bin && check info.random_file random.bin "$PEFT" info random.bin
check eval.data_missing no_such.csv "$PEFT" eval run.yaml adapter="$ADAPTER" eval_file=no_such.csv

echo "bad inputs: $n_pass passed, $n_fail failed"
for f in "${failed[@]}"; do echo "  failed: $f"; done
[[ $n_fail -eq 0 && $n_pass -ge 150 ]]
