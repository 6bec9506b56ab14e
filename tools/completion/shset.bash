# bash completion for shset and shset-inspect

_shset_opts()
{
	local client="--socket --server-uid --timeout --help"
	case $1 in
	serve) echo "--socket --load --save --every --mode --group --help" ;;
	add | remove | contains) echo "$client --hex -0 --raw --json --redis" ;;
	list) echo "$client --hex -0 --raw --json --sorted" ;;
	export) echo "$client --resp --replace --sorted" ;;
	size | clear | stats) echo "$client --json" ;;
	save) echo "$client --sorted --json" ;;
	demo) echo "--workers --keys --keep --help" ;;
	esac
}

_shset()
{
	local cur prev words cword
	_init_completion || return
	if ((cword == 1)); then
		COMPREPLY=($(compgen -W "serve add remove contains size list export clear save stats demo --help --version" -- "$cur"))
		return
	fi
	case $prev in
	--socket | --load | --save)
		_filedir
		return
		;;
	--group)
		COMPREPLY=($(compgen -g -- "$cur"))
		return
		;;
	--server-uid | --timeout | --every | --mode | --workers | --keys | --resp)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_shset_opts "${words[1]}")" -- "$cur"))
	elif [[ ${words[1]} == save ]]; then
		_filedir
	fi
}
complete -F _shset shset

_shset_inspect()
{
	local cur prev words cword
	_init_completion || return
	case $prev in
	--server-uid | --timeout)
		return
		;;
	--socket)
		_filedir
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "--keys --hex -0 --raw --json --verify -q --socket --server-uid --timeout --help --version" -- "$cur"))
	else
		_filedir
	fi
}
complete -F _shset_inspect shset-inspect
