// rotator on Azure Container Apps.
//
// Creates: a user-assigned managed identity (rotator's own identity; no
// client secret anywhere), a Log Analytics workspace and a Container Apps
// environment sending logs to it, an Azure Database for PostgreSQL flexible
// server with a `rotator` database, a Key Vault Secrets Officer role
// assignment on the (existing) vault that holds the consumer secrets (and Key
// Vault Certificates Officer with keyVaultCertificates=true), and the
// container app itself: two replicas, probes on /healthz and /readyz, the
// policy file mounted from a Container Apps secret.
//
// The Microsoft Graph permissions and the app ownerships are granted
// separately by grant-graph-permissions.sh (they live in Entra ID, not in
// Azure Resource Manager): the grantGraphPermissions output is the command to
// run. Least privilege is the default (Application.ReadWrite.OwnedBy); set
// usageReport=true only when an app in the policy uses retire_when = "unused",
// and the command then also grants AuditLog.Read.All. See docs/operations.md.
//
//   az deployment group create -g <resource group> -f deploy/azure/main.bicep \
//     -p keyVaultName=<vault> image=<registry>/rotator:0.1.0 \
//        policyToml=@deploy/azure/policy.toml
//
// The database login is Entra (databaseAuth = 'entra', the default): the managed
// identity is the server's Entra administrator and logs in with a token of its own,
// so no database password exists anywhere. databaseAuth = 'password' (with
// postgresAdminPassword=<generated>) keeps the older stored-password login.

targetScope = 'resourceGroup'

@description('Prefix of the resource names.')
@minLength(3)
@maxLength(20)
param namePrefix string = 'rotator'

param location string = resourceGroup().location

@description('The container image, e.g. contoso.azurecr.io/rotator:0.1.0.')
param image string

@description('Name of the existing Key Vault (RBAC authorization) that holds the consumer secrets; it must be in this resource group.')
param keyVaultName string

@description('How rotator logs in to PostgreSQL. entra (default): with an Entra token of its managed identity, which is the server\'s Entra administrator; no password is stored. password: with postgresAdminLogin and postgresAdminPassword.')
@allowed([
  'entra'
  'password'
])
param databaseAuth string = 'entra'

@description('databaseAuth = password only: administrator login of the PostgreSQL server.')
param postgresAdminLogin string = 'rotatoradmin'

@description('databaseAuth = password only: administrator password of the PostgreSQL server (at least 16 characters): generate one, never commit it.')
@secure()
param postgresAdminPassword string = ''

@description('The policy file (TOML), e.g. the content of deploy/azure/policy.toml.')
@secure()
param policyToml string

@description('Registry server the managed identity pulls the image from with AcrPull, e.g. contoso.azurecr.io (empty: a public image).')
param registryServer string = ''

// One replica scans per interval and all share one Graph write budget through the
// database, so more replicas add availability, not Graph load.
@minValue(1)
@maxValue(10)
param replicas int = 2

@description('True only when an app in the policy uses retire_when = "unused": rotator then reads the credential usage report, which needs the Graph permission AuditLog.Read.All, and the grantGraphPermissions output grants it. False (the default) keeps the identity at Application.ReadWrite.OwnedBy.')
param usageReport bool = false

@description('True only when an app in the policy uses key_vault_format = "certificate": rotator then imports, creates and updates Key Vault certificate objects, which needs Key Vault Certificates Officer on the vault as well. False (the default) keeps the identity at Key Vault Secrets Officer.')
param keyVaultCertificates bool = false

var metricsPort = 9464
var useEntra = databaseAuth == 'entra'
var databaseName = 'rotator'
// Built-in role "Key Vault Secrets Officer": get, list, set, delete secrets.
var keyVaultSecretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
// Built-in role "Key Vault Certificates Officer": every action on certificates (not on
// their access); with Secrets Officer it covers reading a certificate's private key.
var keyVaultCertificatesOfficerRoleId = 'a4417e6f-fecd-4de8-b567-7b0420556985'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-identity'
  location: location
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
  }
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2023-06-01-preview' = {
  name: '${namePrefix}-pg-${uniqueString(resourceGroup().id)}'
  location: location
  sku: {
    name: 'Standard_B1ms'
    tier: 'Burstable'
  }
  properties: {
    version: '16'
    administratorLogin: useEntra ? null : postgresAdminLogin
    administratorLoginPassword: useEntra ? null : postgresAdminPassword
    authConfig: {
      passwordAuth: useEntra ? 'Disabled' : 'Enabled'
      activeDirectoryAuth: useEntra ? 'Enabled' : 'Disabled'
      tenantId: useEntra ? tenant().tenantId : null
    }
    storage: {
      storageSizeGB: 32
    }
    backup: {
      backupRetentionDays: 14
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
  }
}

// Entra login: the identity is the server's Entra administrator, so it can create its
// schema on first start; its PostgreSQL role is named after it.
resource entraAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2023-06-01-preview' = if (useEntra) {
  parent: postgres
  name: identity.properties.principalId
  properties: {
    principalType: 'ServicePrincipal'
    principalName: identity.name
    tenantId: tenant().tenantId
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2023-06-01-preview' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Lets Azure services (the Container Apps environment) reach the server. For
// a private deployment use VNet integration for both and drop this rule.
resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2023-06-01-preview' = {
  parent: postgres
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, keyVaultSecretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficerRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultCertificatesRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (keyVaultCertificates) {
  name: guid(vault.id, identity.id, keyVaultCertificatesOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficerRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

var databaseHost = '${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?sslmode=require'
// Entra: no password in the URL; each connection's password is a fresh token.
var databaseUrl = useEntra ? 'postgresql+psycopg://${identity.name}@${databaseHost}' : 'postgresql+psycopg://${postgresAdminLogin}:${uriComponent(postgresAdminPassword)}@${databaseHost}'

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: namePrefix
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  dependsOn: [
    database
    entraAdmin
    allowAzure
    vaultRole
    vaultCertificatesRole
  ]
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      activeRevisionsMode: 'Single'
      // Metrics and health only, inside the environment.
      ingress: {
        external: false
        targetPort: metricsPort
        transport: 'http'
        allowInsecure: true
      }
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: identity.id
        }
      ]
      secrets: [
        {
          name: 'database-url'
          value: databaseUrl
        }
        {
          name: 'policy-toml'
          value: policyToml
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'rotator'
          image: image
          args: [
            'serve'
          ]
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: [
            // DefaultAzureCredential picks this user-assigned managed identity.
            {
              name: 'AZURE_CLIENT_ID'
              value: identity.properties.clientId
            }
            {
              name: 'AZURE_TENANT_ID'
              value: tenant().tenantId
            }
            {
              name: 'ROTATOR_DATABASE_URL'
              secretRef: 'database-url'
            }
            {
              name: 'ROTATOR_DATABASE_AUTH'
              value: databaseAuth
            }
            {
              name: 'ROTATOR_CONFIG'
              value: '/etc/rotator/policy.toml'
            }
            {
              name: 'ROTATOR_VAULT_URL'
              value: vault.properties.vaultUri
            }
            {
              name: 'ROTATOR_HTTP_PORT'
              value: string(metricsPort)
            }
            {
              name: 'ROTATOR_LOG_FORMAT'
              value: 'json'
            }
            {
              name: 'ROTATOR_LOG_LEVEL'
              value: 'INFO'
            }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: metricsPort
              }
              periodSeconds: 5
              failureThreshold: 60
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: metricsPort
              }
              periodSeconds: 20
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: metricsPort
              }
              periodSeconds: 10
              failureThreshold: 3
            }
          ]
          volumeMounts: [
            {
              volumeName: 'policy'
              mountPath: '/etc/rotator'
            }
            {
              volumeName: 'tmp'
              mountPath: '/tmp'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'policy'
          storageType: 'Secret'
          secrets: [
            {
              secretRef: 'policy-toml'
              path: 'policy.toml'
            }
          ]
        }
        {
          name: 'tmp'
          storageType: 'EmptyDir'
        }
      ]
      scale: {
        minReplicas: replicas
        maxReplicas: replicas
      }
    }
  }
}

@description('Object (principal) id of the managed identity: pass it to grant-graph-permissions.sh.')
output identityPrincipalId string = identity.properties.principalId
@description('The Graph grant to run as an administrator; add --app <client id> for each managed app.')
output grantGraphPermissions string = 'deploy/azure/grant-graph-permissions.sh --principal-id ${identity.properties.principalId}${usageReport ? ' --audit-log' : ''}'
output identityClientId string = identity.properties.clientId
output postgresServer string = postgres.properties.fullyQualifiedDomainName
output workspaceId string = workspace.id
