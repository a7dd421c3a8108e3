
#compdef xfer

_xfer_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _XFER_COMPLETE=complete_zsh xfer)
}

compdef _xfer_completion xfer

