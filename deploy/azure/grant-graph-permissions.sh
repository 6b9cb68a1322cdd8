#!/usr/bin/env bash
# Grant rotator's managed identity what it needs in Microsoft Entra ID:
#
#   1. the Microsoft Graph application permission Application.ReadWrite.OwnedBy
#      (app role 18a4783c-866b-4cc7-a460-3d5e5662c884): add and remove
#      credentials of the apps the identity OWNS, and nothing else;
#   2. optionally (--read-all) Application.Read.All
#      (app role 9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30): read every app
#      registration, so `rotator scan` reports expiring credentials of apps it
#      does not manage. Without it a scan sees only the apps the identity owns;
#   3. optionally (--audit-log) AuditLog.Read.All
#      (app role b0afded3-3588-46d8-8b3d-9842eff778da): read the credential
#      usage report, which apps with retire_when = "unused" need to retire an
#      old credential only once nobody uses it. Without it they use the grace rule;
#   4. ownership of each app it is to manage (`az ad app owner add`).
#
# Application.ReadWrite.All is NOT granted: it lets the identity change every
# app registration in the tenant (add a secret to any app, including highly
# privileged ones) — a tenant-wide takeover path if the identity is ever
# compromised. It is only needed when apps cannot be given an owner (no one may
# add the identity as owner, or apps are created by a process that rejects
# extra owners); prefer fixing that. See docs/operations.md.
#
# Run as someone who may grant admin consent (Privileged Role Administrator or
# Global Administrator for the app role assignment) and who may add owners to
# the apps (Cloud Application Administrator, Application Administrator, or an
# existing owner of each app):
#
#   deploy/azure/grant-graph-permissions.sh --principal-id <identity object id> \
#       [--read-all] [--audit-log] [--app <application (client) id>]...
#
# The principal id is main.bicep's identityPrincipalId output (the managed
# identity's service principal object id). Re-running is safe: existing grants
# and ownerships are left as they are.
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
ROLE_READWRITE_OWNEDBY="18a4783c-866b-4cc7-a460-3d5e5662c884"
ROLE_READ_ALL="9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"
ROLE_AUDIT_LOG="b0afded3-3588-46d8-8b3d-9842eff778da"

usage() {
    sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

principal_id=""
read_all=0
audit_log=0
apps=()
graph="https://graph.microsoft.com/v1.0"

while [ "$#" -gt 0 ]; do
    case "$1" in
        --principal-id) principal_id="${2:?--principal-id needs a value}"; shift 2 ;;
        --app) apps+=("${2:?--app needs a value}"); shift 2 ;;
        --read-all) read_all=1; shift ;;
        --audit-log) audit_log=1; shift ;;
        --graph-url) graph="${2:?--graph-url needs a value}"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

if [ -z "$principal_id" ]; then
    echo "--principal-id is required (the managed identity's object id)" >&2
    usage 2
fi
command -v az >/dev/null || { echo "the Azure CLI (az) is required" >&2; exit 2; }

graph_sp_id="$(az ad sp show --id "$GRAPH_APP_ID" --query id --output tsv)"

grant_role() {
    local role_id="$1" role_name="$2" existing
    existing="$(az rest --method GET \
        --uri "$graph/servicePrincipals/$principal_id/appRoleAssignments" \
        --query "value[?appRoleId=='$role_id' && resourceId=='$graph_sp_id'] | length(@)" \
        --output tsv)"
    if [ "$existing" != "0" ]; then
        echo "already granted: $role_name"
        return
    fi
    az rest --method POST \
        --uri "$graph/servicePrincipals/$principal_id/appRoleAssignments" \
        --headers "Content-Type=application/json" \
        --body "{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp_id\",\"appRoleId\":\"$role_id\"}" \
        --output none
    echo "granted: Microsoft Graph $role_name (application permission, admin consent)"
}

grant_role "$ROLE_READWRITE_OWNEDBY" "Application.ReadWrite.OwnedBy"
if [ "$read_all" -eq 1 ]; then
    grant_role "$ROLE_READ_ALL" "Application.Read.All"
fi
if [ "$audit_log" -eq 1 ]; then
    grant_role "$ROLE_AUDIT_LOG" "AuditLog.Read.All"
fi

for app_id in "${apps[@]}"; do
    owned="$(az ad app owner list --id "$app_id" \
        --query "[?id=='$principal_id'] | length(@)" --output tsv)"
    if [ "$owned" != "0" ]; then
        echo "already owner: $app_id"
        continue
    fi
    az ad app owner add --id "$app_id" --owner-object-id "$principal_id" --output none
    echo "owner added: $app_id"
done

echo "done. Tokens issued before this change do not carry the new roles:"
echo "restart rotator (or wait up to an hour) before the first rotation."
